"""OCR: PP-OCRv4 (rapidocr-onnxruntime), behind a cheap text-presence gate.

Full OCR costs 150 ms to over a second per image on 2 cores. The gate runs only the text
*detector*, on the image shrunk to 320 px, which takes about 40 ms; photos where it finds no
text region skip recognition entirely.
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
        self._gate = rapid_ocr(GATE_SIDE) if gate else None
        self._ocr = rapid_ocr()

    def text_present(self, rgb: np.ndarray) -> bool:
        boxes, _ = self._gate(rgb, use_det=True, use_cls=False, use_rec=False)
        return bool(boxes)

    def run(self, analysis: Analysis) -> None:
        rgb = analysis.image.rgb
        perception = analysis.perception
        if self.gate and not self.text_present(rgb):
            return
        perception.text_present = True
        result, _ = self._ocr(rgb, use_cls=False)
        height, width = rgb.shape[:2]
        lines = []
        for points, text, score in result or []:
            text = " ".join(str(text).split())
            if not text or float(score) < self.min_confidence:
                continue
            xs = [p[0] / width for p in points]
            ys = [p[1] / height for p in points]
            box = tuple(float(v) for v in np.clip([min(xs), min(ys), max(xs), max(ys)], 0.0, 1.0))
            lines.append(TextLine(text=text, score=round(float(score), 4), box=box))
        perception.text = lines
