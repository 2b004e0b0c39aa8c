"""Encoders: text embedders (the language expert) and image backbones (the visual expert).

Each is a registry; adding one is one file with a decorated class and one import line here.
What a plug-in provides is written as protocols in ``indexer.encoders.base``: ``TextEmbedder``,
``Backbone``, ``CrossModalBackbone`` (``cross_modal = True``: a text tower into its image space;
CLIP, SigLIP, E5-V, MoAI), ``ComposingBackbone`` (an image changed by a text, E5-V) and
``BuiltFromCheckpoint`` (``options()``, what the index records to build it again). Outputs are
L2-normalised float32 rows. ``unrelated_similarity`` is the typical cosine between unrelated
inputs, which the mixture subtracts (see ``indexer.mixture``).
"""

from indexer.registry import Registry

TEXT_EMBEDDERS: Registry = Registry("text embedder")
BACKBONES: Registry = Registry("backbone")

# not sorted: the registry lists plug-ins in the order they register (the packaged ones first)
from indexer.encoders import e5, minilm, efficientnet, clip, e5v, moai, openclip  # noqa: E402,F401,I001

DEFAULT_TEXT_EMBEDDER = "e5-small"
DEFAULT_BACKBONE = "efficientnet-lite3"
