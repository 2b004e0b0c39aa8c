"""Panoptic segmentation with Mask2Former from a local checkpoint (MoAI's segmentation expert,
``facebook/mask2former-swin-base-coco-panoptic``): segments kept at score >= 0.5 with MoAI's mask
threshold 0.95, on the image resized to 490 x 490; each segment becomes its mask's bounding box
and its COCO panoptic class name (the verbalization strips ``-merged``, ``-other``, ``-stuff``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from PIL import Image

from indexer.checkpoints import CheckpointModel
from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.experts.owlv2 import MOAI_SIDE
from indexer.records import Detection

SEGMENT_IDS = "panoptic_segment_ids"  # Analysis.cache key: the 490 x 490 segment ids (0 or less: none)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The normalised ``[x0, y0, x1, y1]`` around a boolean mask's pixels (None when empty)."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    height, width = mask.shape
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return (x0 / width, y0 / height, (x1 + 1) / width, (y1 + 1) / height)


@EXPERTS.register("panoptic")
class Mask2FormerPanoptic(CheckpointModel):
    """Mask2Former through transformers (``Mask2FormerForUniversalSegmentation``)."""

    name: ClassVar[str] = "panoptic"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("segments",)

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        min_score: float = 0.5,
        mask_threshold: float = 0.95,
        max_segments: int = 30,
    ) -> None:
        super().__init__(checkpoint, "the panoptic expert", "Mask2FormerForUniversalSegmentation", device, dtype)
        self.min_score = min_score
        self.mask_threshold = mask_threshold
        self.max_segments = max_segments
        self.labels = self.model.config.id2label
        self.version = f"mask2former-{self.fingerprint}/{min_score}/{mask_threshold}"

    def run(self, analysis: Analysis) -> None:
        image = Image.fromarray(analysis.resized(MOAI_SIDE, MOAI_SIDE))
        inputs = self.processor(images=[image], return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with self._lock, self._torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_panoptic_segmentation(
            outputs,
            threshold=self.min_score,
            mask_threshold=self.mask_threshold,
            label_ids_to_fuse=set(),
            target_sizes=[(MOAI_SIDE, MOAI_SIDE)],
        )[0]
        segmentation = result["segmentation"].cpu().numpy()
        analysis.cache[SEGMENT_IDS] = segmentation  # for the moai backbone's colour-map input
        segments = []
        for info in result["segments_info"]:
            box = mask_box(segmentation == info["id"])
            if box is not None:
                label = self.labels.get(int(info["label_id"]), str(info["label_id"]))
                segments.append(Detection(label=label, score=round(float(info["score"]), 4), box=box))
        analysis.perception.segments = segments[: self.max_segments]
