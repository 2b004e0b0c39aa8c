"""What kind of picture an image is: a photo, a black and white photo, or a digital illustration
(flat art, a render, a graphic), from two image statistics.

- Colour: a picture where almost no pixel has any saturation is black and white.
- Sensor noise: a camera leaves noise and texture everywhere; drawn, rendered and flat digital
  art has large areas where neighbouring pixels are exactly alike and no noise. An image counts
  as a digital illustration when at least ``min_flat`` of it is flat (local standard deviation
  under 1 grey level) and its high-frequency residual (grey minus a 3x3 median) is at most
  ``max_noise`` grey levels at the 90th percentile. Photos with much plain sky or wall keep their
  noise (measured on the development set: a rocket against the sky, 51 % flat, has 5 levels;
  flat and rendered wallpapers 0 to 1); a render saved as a lossy JPEG can keep enough noise to
  pass for a photo, and paintings are photos of paint to this test.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from indexer.experts import EXPERTS
from indexer.experts.base import Analysis

SIDE = 256  # statistics are taken on the image at this width


@EXPERTS.register("medium")
class PictureMedium:
    name: ClassVar[str] = "medium"
    version: ClassVar[str] = "saturation-noise/1"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("medium",)
    packages: ClassVar[tuple[str, ...]] = ("opencv-python-headless", "numpy")

    def __init__(self, max_colored: float = 0.02, min_flat: float = 0.45, max_noise: float = 1.0) -> None:
        self.max_colored = max_colored
        self.min_flat = min_flat
        self.max_noise = max_noise

    def run(self, analysis: Analysis) -> None:
        height = max(1, round(SIDE * analysis.image.height / max(analysis.image.width, 1)))
        rgb = analysis.resized(SIDE, height)
        colored = float((cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1] > 30).mean())
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        as_float = grey.astype(np.float32)
        variance = cv2.blur(as_float * as_float, (5, 5)) - cv2.blur(as_float, (5, 5)) ** 2
        flat = float((variance < 1.0).mean())
        noise = float(np.percentile(np.abs(as_float - cv2.medianBlur(grey, 3).astype(np.float32)), 90))
        if flat >= self.min_flat and noise <= self.max_noise:
            analysis.perception.medium = "digital illustration"
        elif colored <= self.max_colored:
            analysis.perception.medium = "black and white photo"
        else:
            analysis.perception.medium = "photo"
