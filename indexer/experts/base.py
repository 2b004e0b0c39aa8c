"""The perception-expert interface: each expert reads an image and fills its part of a ``Perception``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import cv2
import numpy as np

from indexer.images import LoadedImage
from indexer.records import Perception


@dataclass
class Analysis:
    """One image on its way through the experts.

    ``cache`` holds model outputs that more than one consumer needs (the EfficientNet pass feeds
    both the tag expert and the visual backbone), so each model runs once per image.
    """

    image: LoadedImage
    perception: Perception
    cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, image: LoadedImage) -> Analysis:
        return cls(image=image, perception=Perception(width=image.width, height=image.height))

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def resized(self, width: int, height: int) -> np.ndarray:
        """The image resized to ``width`` x ``height`` (memoised: several models share input sizes)."""
        return self.cached(
            f"resized:{width}x{height}",
            lambda: cv2.resize(self.image.rgb, (width, height), interpolation=cv2.INTER_AREA),
        )


class Expert(Protocol):
    """A perception expert. ``version`` changes whenever its output for the same image may change.
    ``reads`` and ``writes`` name the ``Perception`` fields it reads and fills: they set the order
    experts run in (``indexer.experts.run_order``)."""

    name: ClassVar[str]
    version: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]
    writes: ClassVar[tuple[str, ...]]

    def run(self, analysis: Analysis) -> None:
        """Fill this expert's fields of ``analysis.perception``."""
