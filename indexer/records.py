"""Typed records that cross stages: what the experts saw, how it was put into words, what was stored.

Boxes are ``[x0, y0, x1, y1]`` normalised to 0..1 by image width and height, as in MoAI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, PlainSerializer, computed_field, field_validator, model_validator

Box = tuple[float, float, float, float]
Modality = Literal["image", "text", "image,text"]  # M-BEIR's names for what an item holds

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def shown_path(path: str) -> str:
    """``path`` as text that any output can carry: the bytes of a file name that are not UTF-8
    (held by Python as the lone surrogates U+DC80..U+DCFF) shown as \\xNN, as Python's
    backslashreplace shows them; any other lone surrogate as U+FFFD."""

    def shown(match: re.Match) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "\ufffd"

    return _LONE_SURROGATE.sub(shown, path)


# A file path: the exact name in Python, shown escaped in JSON (which cannot hold raw bytes).
FilePath = Annotated[str, PlainSerializer(shown_path, when_used="json")]
# (path, reason) pairs, as {"path", "reason"} objects in JSON
PathReasons = Annotated[
    list[tuple[str, str]],
    PlainSerializer(
        lambda pairs: [{"path": shown_path(p), "reason": shown_path(r)} for p, r in pairs], when_used="json"
    ),
]
Seconds = Annotated[float, PlainSerializer(lambda s: round(s, 2), when_used="json")]


class Detection(BaseModel):
    label: str
    score: float
    box: Box


class Tag(BaseModel):
    """A whole-image label from the ImageNet tagger (first synonym of the class name)."""

    label: str
    score: float
    kind: str = ""  # its everyday kind (WordNet): "bird" for "bald eagle", "mountain" for "alp"


class TextLine(BaseModel):
    """One line read by OCR."""

    text: str
    score: float
    box: Box


class ColorShare(BaseModel):
    name: str
    fraction: float


class Relation(BaseModel):
    """A scene-graph triple; names carry MoAI's " (#n)" suffix when a label repeats."""

    subject: str
    predicate: str
    object: str


class Perception(BaseModel):
    """Everything the perception experts found in one image."""

    width: int
    height: int
    segments: list[Detection] = Field(default_factory=list)  # panoptic segments, from a checkpoint expert
    detections: list[Detection] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    text: list[TextLine] = Field(default_factory=list)
    text_present: bool = False
    colors: list[ColorShare] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    medium: Literal["photo", "black and white photo", "digital illustration"] | None = None  # None: not judged


class Verbalization(BaseModel):
    """The perception put into words: MoAI's exact auxiliary prompt, and a phrasing for sentence embedders."""

    moai: str
    retrieval: str
    retrieval_ko: str = ""  # the same facts in Korean, for Korean queries (multilingual embedders)
    text: str = ""  # the OCR text alone, embedded as its own block
    given_text: str = ""  # text that came with the item (a caption, a passage), not read in the image


class Entry(BaseModel):
    """An item given by the caller instead of found as a file: a key that names fixed content,
    and a text, an image file, or both (M-BEIR's text, image and image,text candidates)."""

    key: str
    text: str | None = None
    image: Path | None = None

    @field_validator("key")
    @classmethod
    def _storable_key(cls, key: str) -> str:
        try:
            key.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise ValueError(f"entry key {shown_path(key)!r} holds a lone UTF-16 surrogate") from None
        return key

    @model_validator(mode="after")
    def _holds_something(self) -> Entry:
        if not self.text and self.image is None:
            raise ValueError(f"entry {self.key!r} has neither a text nor an image")
        return self

    @property
    def modality(self) -> Modality:
        return "image,text" if self.text and self.image else "image" if self.image else "text"


class ItemRecord(BaseModel):
    """One indexed item (an image, a text, or both) as the store keeps it."""

    item_id: int
    paths: list[FilePath]  # file paths, or the keys of entries
    content_hash: str
    modality: Modality = "image"
    perception: Perception
    verbalization: Verbalization
    expert_versions: dict[str, str]


class SearchHit(BaseModel):
    """One search result: where the image is, how well it matched, and why."""

    rank: int
    item_id: int
    path: FilePath
    score: float
    contributions: dict[str, float]
    evidence: list[str]
    other_paths: list[FilePath] = Field(default_factory=list)
    # with rerank: the generator's probability that the item matches the query ("Yes" over "No");
    # None for a hit that was not re-scored
    rerank_score: float | None = None


class IndexReport(BaseModel):
    """What one indexing run did (``moair index --json`` prints it)."""

    added: int = 0  # new content, analysed and embedded
    updated: int = 0  # indexed content analysed again because an expert or encoder changed version
    linked: int = 0  # new or changed path whose content was already indexed (not embedded again)
    unchanged: int = 0
    removed: int = 0
    skipped: PathReasons = Field(default_factory=list)  # bad bytes, found in this run
    skipped_before: int = 0  # bad files seen in an earlier run and not changed since
    failed: PathReasons = Field(default_factory=list)  # not read or analysed; tried again next run
    retried: int = 0  # files that failed in an earlier run, tried again in this one
    interrupted: bool = False
    maintenance: str | None = None  # what was done to the vector index afterwards (rebuilt, compacted, tuned)
    seconds: Seconds = 0.0
    items_in_index: int = 0  # live items once the run ended

    @computed_field
    @property
    def images_per_second(self) -> Seconds:
        """Images analysed (added or updated) per second of the run."""
        return (self.added + self.updated) / self.seconds if self.seconds > 0 else 0.0
