"""Dominant colours as plain names, from a 64x64 thumbnail in HSV."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.records import ColorShare

# Hue boundaries in OpenCV's 0..180 hue scale.
HUE_NAMES = [
    (8, "red"),
    (20, "orange"),
    (33, "yellow"),
    (85, "green"),
    (130, "blue"),
    (150, "purple"),
    (170, "pink"),
    (181, "red"),
]
COLOR_NAMES = ["black", "white", "gray", "brown", *dict.fromkeys(name for _, name in HUE_NAMES)]


def color_names(hsv: np.ndarray) -> np.ndarray:
    """Index into ``COLOR_NAMES`` for each HSV pixel (H in 0..180, S and V in 0..255)."""
    h, s, v = (hsv[..., i].astype(np.int32) for i in range(3))
    hue_name = np.full(h.shape, COLOR_NAMES.index("red"))
    for bound, name in reversed(HUE_NAMES):
        hue_name[h < bound] = COLOR_NAMES.index(name)
    names = hue_name
    brown = (h >= 5) & (h < 25) & (v < 150) & (s > 60)
    names = np.where(brown, COLOR_NAMES.index("brown"), names)
    names = np.where(s < 45, np.where(v > 200, COLOR_NAMES.index("white"), COLOR_NAMES.index("gray")), names)
    names = np.where(v < 45, COLOR_NAMES.index("black"), names)
    return names


@EXPERTS.register("colors")
class DominantColors:
    name: ClassVar[str] = "colors"
    version: ClassVar[str] = "hsv-names/1"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("colors",)
    packages: ClassVar[tuple[str, ...]] = ("opencv-python-headless", "numpy")

    def __init__(self, min_fraction: float = 0.12, max_colors: int = 3) -> None:
        self.min_fraction = min_fraction
        self.max_colors = max_colors

    def run(self, analysis: Analysis) -> None:
        hsv = cv2.cvtColor(analysis.resized(64, 64), cv2.COLOR_RGB2HSV)
        counts = np.bincount(color_names(hsv).ravel(), minlength=len(COLOR_NAMES)) / (64 * 64)
        order = np.argsort(-counts)[: self.max_colors]
        analysis.perception.colors = [
            ColorShare(name=COLOR_NAMES[i], fraction=round(float(counts[i]), 3))
            for i in order
            if counts[i] >= self.min_fraction
        ]
