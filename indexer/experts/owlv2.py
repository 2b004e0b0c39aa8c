"""Open-world detection with OWLv2 from a local checkpoint (MoAI's detection expert,
``google/owlv2-base-patch16-ensemble``): queried with MoAI's 1,847 class names (ADE20K-Full's 847
and the ImageNet 1000 of CLIP's list, ``indexer/lexicon``), boxes kept at score >= 0.5, on the
image resized to 490 x 490, as MoAI's code does.

Unlike MoAI, which has OWLv2 as its only detector, its boxes join the packaged detector's in
``perception.detections``: where both name the same object (same label, boxes overlapping by more
than half) the higher score stays; the list is sorted by score and capped at ``max_objects``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

from PIL import Image

from indexer.checkpoints import CheckpointModel
from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.experts.detection import box_iou
from indexer.records import Detection

MOAI_SIDE = 490  # MoAI resizes every expert's input to 490 x 490
LEXICON = Path(__file__).resolve().parent.parent / "lexicon"


def _tsv_column(name: str, column: int) -> list[str]:
    rows = (LEXICON / name).read_text(encoding="utf-8").splitlines()[1:]  # after the header
    return [row.split("\t")[column].strip() for row in rows if row.strip()]


@functools.cache
def moai_vocabulary() -> tuple[str, ...]:
    """MoAI's OWLv2 queries, as its code builds them: ADE20K-Full's 847 class names (the first
    synonym of each) then the 1000 ImageNet names of CLIP's zero-shot list, no prompt template;
    a name both lists hold is asked once (the same string gets the same score either way)."""
    names = _tsv_column("ade20k_847.tsv", 2) + _tsv_column("imagenet_clip_1000.tsv", 1)
    return tuple(dict.fromkeys(names))


def merge_detections(
    existing: list[Detection], found: list[Detection], same_object_iou: float = 0.5
) -> list[Detection]:
    """Both lists in one, by score; a box that repeats a higher-scoring box of the same label goes."""
    kept: list[Detection] = []
    for d in sorted(existing + found, key=lambda d: -d.score):
        if all(k.label != d.label or box_iou(k.box, d.box) <= same_object_iou for k in kept):
            kept.append(d)
    return kept


@EXPERTS.register("owlv2")
class Owlv2Detector(CheckpointModel):
    """OWLv2 through transformers (``Owlv2ForObjectDetection``)."""

    name: ClassVar[str] = "owlv2"
    reads: ClassVar[tuple[str, ...]] = ("detections",)
    writes: ClassVar[tuple[str, ...]] = ("detections",)
    packages: ClassVar[tuple[str, ...]] = (*CheckpointModel.packages, "scipy")

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        min_score: float = 0.5,
        max_objects: int = 30,
        vocabulary: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(checkpoint, "the owlv2 expert", "Owlv2ForObjectDetection", device, dtype)
        self.min_score = min_score
        self.max_objects = max_objects
        self.vocabulary = vocabulary or moai_vocabulary()
        self.version = f"owlv2-{self.fingerprint}/{len(self.vocabulary)}-names/{min_score}"
        self._queries = None

    def _query_embeddings(self):
        """The vocabulary through the text tower, once: each image then costs only the image tower."""
        if self._queries is None:
            tokens = self.processor.tokenizer(
                list(self.vocabulary), padding="max_length", truncation=True, return_tensors="pt"
            ).to(self.device)
            with self._torch.inference_mode():
                output = self.model.owlv2.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            self._queries = output if isinstance(output, self._torch.Tensor) else output.pooler_output
        return self._queries

    def detect(self, image: Image.Image) -> list[tuple[float, int, tuple[float, float, float, float]]]:
        """(score, vocabulary index, normalised box) for each of OWLv2's boxes on a square image,
        best query per box: what the model's forward and ``post_process_object_detection`` give,
        with the query embeddings computed once instead of per image."""
        torch = self._torch
        pixels = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        with self._lock, torch.inference_mode():
            queries = self._query_embeddings()
            feature_map = self.model.image_embedder(pixel_values=pixels.to(self.device, self.model.dtype))[0]
            features = feature_map.reshape(feature_map.shape[0], -1, feature_map.shape[-1])
            mask = torch.ones(1, queries.shape[0], dtype=torch.bool, device=self.device)
            logits = self.model.class_predictor(features, queries[None], mask)[0][0].float()
            centre_boxes = self.model.box_predictor(features, feature_map)[0].float()
        scores, labels = torch.sigmoid(logits.max(dim=-1).values), logits.argmax(dim=-1)
        cx, cy, w, h = centre_boxes.clamp(0, 1).unbind(-1)  # a square input: no padding to undo
        corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1).clamp(0, 1)
        return [
            (float(s), int(label), tuple(float(v) for v in b)) for s, label, b in zip(scores, labels, corners.tolist())
        ]

    def run(self, analysis: Analysis) -> None:
        image = Image.fromarray(analysis.resized(MOAI_SIDE, MOAI_SIDE))
        found = [
            Detection(label=self.vocabulary[label], score=round(score, 4), box=box)
            for score, label, box in self.detect(image)
            if score > self.min_score and box[2] > box[0] and box[3] > box[1]
        ]
        merged = merge_detections(analysis.perception.detections, found)
        analysis.perception.detections = merged[: max(self.max_objects, len(analysis.perception.detections))]
