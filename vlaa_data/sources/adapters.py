"""Import every dataset adapter so that each registers itself in ``ADAPTERS``."""

from vlaa_data.sources import (  # noqa: F401
    allava_laion,
    arxivqa,
    clevr_math,
    docvqa,
    geoqa170k,
    llava_cot,
    math_puma,
    vizwiz,
)

__all__: list[str] = []
