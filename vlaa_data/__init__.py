"""vlaa-data: build, curate, publish and train on R1-style multimodal reasoning datasets."""

__version__ = "0.1.0"
__all__ = ["__version__"]
