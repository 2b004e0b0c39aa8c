"""What a generator is given about one retrieved item."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.records import Perception


@dataclass(frozen=True)
class Candidate:
    """One retrieved item as a generator reads it.

    ``description`` is the item's retrieval verbalization plus any text that came with it (a
    caption, a passage); ``image_path`` is the image file, when the item has one and a model can
    look at pixels; ``perception`` is what the experts saw, for models that want it structured.
    Text-only generators read ``description`` (and fall back on ``perception`` when it is empty).
    """

    item_id: int
    description: str
    image_path: str | None = None
    perception: Perception | None = None
