"""The model loader ``vlaa_data.testing.serve`` gives ``transformers serve`` from 5.25 on.

A module of its own, importable by name: serve pickles its loader into each model's process,
which it spawns, and that process imports the loader's class again from here. Importing this
module imports transformers' serving code.
"""

from __future__ import annotations

from typing import Any

from transformers.cli.serving.model_manager import ModelLoader
from transformers.cli.serving.utils import parse_model_id

__all__ = ["ProcessorLoader"]


class ProcessorLoader(ModelLoader):
    """Serve's ``ModelLoader``, with processors loaded by ``vlaa_data.hf.load_processor``.

    Only where serve would load the default revision's own processor files: a GGUF file, another
    revision or remote code still go through ``AutoProcessor``.
    """

    def load_processor(self, model_id: str) -> Any:
        repo, revision, gguf_file = parse_model_id(model_id)
        if gguf_file is not None or revision not in (None, "main") or self.trust_remote_code:
            return super().load_processor(model_id)
        from vlaa_data.hf import load_processor

        return load_processor(repo)
