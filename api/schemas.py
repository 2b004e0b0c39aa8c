"""The HTTP API's request and response bodies, and what each error status means. Limits are the
ones the Python API checks (``retriever.query``)."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import Busy, DamagedIndex, Locked, NotFound
from indexer.model_check import ModelCheck
from indexer.records import Modality, SearchHit
from retriever.generative.ask import SUPPORT_FLOOR
from retriever.query import DEFAULT_ASK_BUDGET, MAX_ASK_K, MAX_BUDGET, MAX_K, MAX_RERANK

PAGE_NOTE = (
    f"Skip this many hits (pagination). Search goes {MAX_K} hits deep: a page past that comes back short or empty."
)

# A character that is not a space, as Python's str.strip sees spaces: besides Unicode's White_Space
# (regex \s), it strips the separators U+001C..U+001F, so "\x1f" alone is no query.
VISIBLE = r"[^\s\x1c-\x1f]"


class ThumbnailSize(IntEnum):
    """Longest side of a thumbnail, in pixels."""

    small = 128
    medium = 256
    large = 512


class SearchRequest(BaseModel):
    """A text search (English or Korean)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored

    text: str = Field(
        min_length=1, max_length=2000, pattern=VISIBLE, description="The query; needs a character that is not a space."
    )
    k: int = Field(10, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=MAX_K - 1, description=PAGE_NOTE)
    modality: Modality | None = None
    min_score: float | None = None
    max_drop: float | None = Field(None, ge=0)
    rerank: int = Field(
        0,
        ge=0,
        le=MAX_RERANK,
        description='Re-score the top N hits with a generative model as P("Yes") that they match.',
    )
    time_budget: float | None = Field(
        None, gt=0, le=MAX_BUDGET, description="Seconds the re-scoring may take (within the server's cap)."
    )


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    offset: int
    k: int
    reranked_by: str | None = None  # the generator whose P("Yes") ordered the hits (rerank_score)


class AskRequest(BaseModel):
    """A question answered from the collection."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, pattern=VISIBLE)
    k: int = Field(5, ge=1, le=MAX_ASK_K, description="Items retrieved to answer from.")
    min_score: float = Field(SUPPORT_FLOOR, description="Retrieval score an item needs to be a source.")
    time_budget: float = Field(
        DEFAULT_ASK_BUDGET, gt=0, le=MAX_BUDGET, description="Seconds for the whole answer (within the server's cap)."
    )
    stream: bool = Field(True, description="Server-sent events (sources, token..., answer) instead of one JSON answer.")


class Health(BaseModel):
    status: Literal["ok", "failing"]  # failing: a model of the index does not load or run (detail=true checks them)
    items: int
    models: list[ModelCheck] | None = None  # with detail=true: each model, its packages, whether it runs


class Deleted(BaseModel):
    removed: int
    items: int


class ErrorBody(BaseModel):
    error: str


ERROR_STATUS = {NotFound: 404, Locked: 409, Busy: 503, DamagedIndex: 500}  # any other MoairError: 400 (bad input)
ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 421, 422, 500, 503)}
