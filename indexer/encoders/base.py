"""The contracts of the encoder plug-ins, as ``typing.Protocol``s: a class in ``TEXT_EMBEDDERS``
is a ``TextEmbedder``, one in ``BACKBONES`` a ``Backbone``. They are structural: a plug-in
declares the attributes and methods, it does not inherit from these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.experts.base import Analysis


class TextEmbedder(Protocol):
    """Embeds text for the caption and text blocks (rows L2-normalised, ``dim`` wide)."""

    name: str
    version: str  # changes whenever its vectors for the same text may change
    dim: int
    unrelated_similarity: float  # the typical cosine between a query and an unrelated passage
    multilingual: bool  # reads Korean queries (the Korean verbalization is embedded too)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class Backbone(Protocol):
    """Embeds images for the visual block. ``cross_modal`` says whether it is also a
    ``CrossModalBackbone`` (text queries reach the visual block)."""

    name: str
    version: str
    dim: int
    unrelated_similarity: float  # the typical cosine between two unrelated images
    cross_modal: bool

    def embed(self, analyses: Sequence[Analysis]) -> np.ndarray: ...


class CrossModalBackbone(Backbone, Protocol):
    """A backbone with a text tower in the same space (CLIP, SigLIP, E5-V, MoAI)."""

    unrelated_text_similarity: float  # the typical cosine between a text and an unrelated image

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ComposingBackbone(Protocol):
    """A cross-modal backbone that embeds an image and a text together ("this image, but ...")."""

    def embed_composed(self, analysis: Analysis, text: str) -> np.ndarray: ...


@runtime_checkable
class BuiltFromCheckpoint(Protocol):
    """A plug-in loaded from a user's checkpoint (backbone or expert): ``options()`` is what the
    index records to build it again."""

    def options(self) -> dict[str, str]: ...
