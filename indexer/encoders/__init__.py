"""Encoders: text embedders (the language expert) and image backbones (the visual expert).

Each is a registry; adding one is one file with a decorated class and one import line here.
A text embedder provides ``name``, ``version``, ``dim``, ``unrelated_similarity``,
``multilingual`` (whether it reads the Korean caption), ``embed_queries(texts)`` and
``embed_passages(texts)``; a backbone provides ``name``,
``version``, ``dim``, ``unrelated_similarity`` and ``embed(analyses)``. A backbone built from a
user's checkpoint also has ``options()`` (what the index records to build it again, e.g. the
checkpoint folder); a cross-modal one (``cross_modal = True``: CLIP, SigLIP) has
``embed_texts(texts)`` into its image space and ``unrelated_text_similarity``, and may have
``embed_composed(analysis, text)`` for an image changed by a text (E5-V). Outputs are
L2-normalised float32 rows. ``unrelated_similarity`` is the typical cosine between unrelated
inputs, which the mixture subtracts (see ``retriever.mixture``).
"""

from indexer.registry import Registry

TEXT_EMBEDDERS: Registry = Registry("text embedder")
BACKBONES: Registry = Registry("backbone")

# not sorted: the registry lists plug-ins in the order they register (the packaged ones first)
from indexer.encoders import e5, minilm, efficientnet, clip, e5v, moai, openclip  # noqa: E402,F401,I001

DEFAULT_TEXT_EMBEDDER = "e5-small"
DEFAULT_BACKBONE = "efficientnet-lite3"
