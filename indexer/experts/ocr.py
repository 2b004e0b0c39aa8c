"""OCR: PP-OCRv4 (rapidocr-onnxruntime), behind a cheap text-presence gate.

PP-OCR's own pipeline runs its text detector on the image scaled so its short side is 736 px
(about 150 ms per photo on 2 cores) before recognition. Here the detector runs once, on the image
shrunk to at most ``GATE_SIDE`` px on its long side (about 16 ms): photos where it finds no text
region stop there, and for the others the recogniser reads the regions it found, cropped from the
full working image, so no second detection pass is paid. Text smaller than about 2 % of the image
height is missed at this size; that is the price of the gate.

rapidocr's detector picks its own input size (it even enlarges small images to 736 px), so the
gate calls its stages directly: ``DetPreProcess``, ``infer``, ``postprocess_op`` on the detector,
and ``get_crop_img_list`` / ``text_rec`` for recognition (pinned rapidocr 1.4.4).

The regions and PP-OCR's readings are kept in the analysis (``read_regions``), so the Hangul
expert reads the ones PP-OCR could not without detecting again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.packaged_models import rapid_ocr
from indexer.records import TextLine

GATE_SIDE = 320
# The detector rounds its input's sides to multiples of 32: a side under 17 px becomes 0 and
# onnxruntime fails (images of 16 px or less, or a 1024 x 10 strip shrunk to the gate's size).
MIN_SIDE = 17
MOAI_MIN_CONFIDENCE = 0.85  # MoAI keeps PaddleOCR lines at or above this confidence
# A line with one letter or digit is mostly a misread texture or logo (one CJK character read at
# 0.94 in a line drawing made it the top hit of many unrelated queries); it says nothing searchable.
MIN_LINE_CHARACTERS = 2


@dataclass
class TextRegion:
    """One text region found by PP-OCR's detector, with the recogniser's reading of it."""

    points: np.ndarray  # (4, 2) corners in the working image's pixels
    crop: np.ndarray  # the region cut out and straightened (BGR)
    text: str
    score: float


def find_text_regions(bgr: np.ndarray, gate: bool = True) -> np.ndarray:
    """Quadrilaterals (n, 4, 2) of text regions in ``bgr``'s pixel coordinates, in reading order."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    height, width = bgr.shape[:2]
    if min(height, width) < MIN_SIDE:  # too thin to hold a line of text, and the detector fails on it
        return np.zeros((0, 4, 2), np.float32)
    detector = rapid_ocr().text_det
    if not gate:  # PP-OCR's own detector at its own input size
        boxes, _ = detector(bgr)
    else:
        thin = min(height, width) * GATE_SIDE / max(height, width, GATE_SIDE) < MIN_SIDE
        # a long strip (a banner) keeps its short side at the detector's least instead
        gate_input = (
            DetPreProcess(32, "min", detector.mean, detector.std)
            if thin
            else DetPreProcess(GATE_SIDE, "max", detector.mean, detector.std)
        )
        scores = detector.infer(gate_input(bgr))[0]
        boxes, _ = detector.postprocess_op(scores, bgr.shape[:2])
        boxes = detector.filter_tag_det_res(boxes, bgr.shape[:2])
    if boxes is None or not len(boxes):
        return np.zeros((0, 4, 2), np.float32)
    return np.asarray(rapid_ocr().sorted_boxes(boxes), dtype=np.float32)  # reading order


def read_regions(analysis: Analysis, gate: bool = True) -> list[TextRegion]:
    """The image's text regions and PP-OCR's reading of each (computed once per analysis)."""

    def read() -> list[TextRegion]:
        bgr = np.ascontiguousarray(analysis.image.rgb[:, :, ::-1])  # PP-OCR was trained on OpenCV's BGR
        boxes = find_text_regions(bgr, gate)
        if not len(boxes):
            return []
        ocr = rapid_ocr()
        crops = ocr.get_crop_img_list(bgr, boxes)
        readings, _ = ocr.text_rec(crops)
        return [
            TextRegion(points, crop, " ".join(str(text).split()), float(score))
            for points, crop, (text, score) in zip(boxes, crops, readings)
        ]

    return analysis.cached(f"ocr-regions:{'gate' if gate else 'full'}", read)


def text_line(region: TextRegion, text: str, score: float, width: int, height: int) -> TextLine:
    """A ``TextLine`` for ``region`` with its box as fractions of the image."""
    xs = region.points[:, 0] / width
    ys = region.points[:, 1] / height
    box = tuple(float(v) for v in np.clip([xs.min(), ys.min(), xs.max(), ys.max()], 0.0, 1.0))
    return TextLine(text=text, score=round(float(score), 4), box=box)


def searchable(text: str) -> bool:
    return len(re.findall(r"\w", text)) >= MIN_LINE_CHARACTERS


@EXPERTS.register("ocr")
class PaddleOcr:
    name: ClassVar[str] = "ocr"
    version: ClassVar[str] = "pp-ocrv4-rapidocr/3"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("text", "text_present")
    packages: ClassVar[tuple[str, ...]] = ("rapidocr-onnxruntime", "onnxruntime", "opencv-python-headless")

    def __init__(self, min_confidence: float = MOAI_MIN_CONFIDENCE, gate: bool = True) -> None:
        self.min_confidence = min_confidence
        self.gate = gate

    def keeps(self, region: TextRegion) -> bool:
        """Whether PP-OCR's reading of ``region`` is kept."""
        return region.score >= self.min_confidence and searchable(region.text)

    def run(self, analysis: Analysis) -> None:
        regions = read_regions(analysis, self.gate)
        if not regions:
            return
        perception = analysis.perception
        perception.text_present = True
        height, width = analysis.image.rgb.shape[:2]
        perception.text = [text_line(r, r.text, r.score, width, height) for r in regions if self.keeps(r)]
