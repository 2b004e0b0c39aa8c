"""The generator contract (``Generator``) and what a generator is given about one retrieved item."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

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


class Generator(Protocol):
    """A generative model over retrieved items (a plug-in in ``GENERATORS``)."""

    name: str
    version: str

    def judge(self, question: str, candidates: Sequence[Candidate]) -> list[float]:
        """The probability of "Yes" (normalised over "Yes" and "No") that each candidate matches."""
        ...

    def stream(
        self, question: str, sources: Sequence[Candidate], max_new_tokens: int = 128, deadline: float | None = None
    ) -> Iterator[str]:
        """The answer grounded in ``sources``, as it is generated, stopping at ``deadline`` (a
        ``time.monotonic()`` value)."""
        ...
