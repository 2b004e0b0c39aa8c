"""OCR: PP-OCRv4 (rapidocr-onnxruntime), behind a cheap text-presence gate.

Full OCR (PP-OCR's detector at 736 px, then recognition) costs 150 ms to over a second per image
on 2 cores. Here the text detector runs once, on the image shrunk to at most 320 px (about
40 ms): photos where it finds no text region stop there, and for the others the recogniser reads
the regions it found, cropped from the full working image, so no second detection pass is paid.
Recognition uses rapidocr's ``get_crop_img_list`` and ``text_rec`` (pinned rapidocr 1.4.4).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.packaged_models import rapid_ocr
from indexer.records import TextLine

GATE_SIDE = 320
MOAI_MIN_CONFIDENCE = 0.85  # MoAI keeps PaddleOCR lines at or above this confidence


@EXPERTS.register("ocr")
class PaddleOcr:
    name: ClassVar[str] = "ocr"
    version: ClassVar[str] = "pp-ocrv4-rapidocr/1"

    def __init__(self, min_confidence: float = MOAI_MIN_CONFIDENCE, gate: bool = True) -> None:
        self.min_confidence = min_confidence
        self.gate = gate
        # gate=False: PP-OCR's own full-resolution detector instead of the 320 px pass.
        self._ocr = rapid_ocr(GATE_SIDE if gate else None)

    def run(self, analysis: Analysis) -> None:
        bgr = np.ascontiguousarray(analysis.image.rgb[:, :, ::-1])  # PP-OCR was trained on OpenCV's BGR
        perception = analysis.perception
        boxes, _ = self._ocr(bgr, use_det=True, use_cls=False, use_rec=False)
        if not boxes:
            return
        perception.text_present = True
        boxes = np.asarray(boxes, dtype=np.float32)
        read, _ = self._ocr.text_rec(self._ocr.get_crop_img_list(bgr, boxes))
        height, width = bgr.shape[:2]
        lines = []
        for points, (text, score) in zip(boxes, read):
            text = " ".join(str(text).split())
            if not text or float(score) < self.min_confidence:
                continue
            xs = [p[0] / width for p in points]
            ys = [p[1] / height for p in points]
            box = tuple(float(v) for v in np.clip([min(xs), min(ys), max(xs), max(ys)], 0.0, 1.0))
            lines.append(TextLine(text=text, score=round(float(score), 4), box=box))
        perception.text = lines
