"""Answers grounded in the collection (``moair ask``): retrieve, keep the items that score above
chance by a margin, and let a generative model answer from them, citing them by number; with no
such item the answer is "not found in the collection" and nothing is generated."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel

from indexer.records import SearchHit
from retriever.generative.records import Candidate, Generator

NOT_FOUND = "not found in the collection"
SUPPORT_FLOOR = 0.0  # retrieval score an item needs to be a source: above chance level (scores are chance-corrected)
_CITATION = re.compile(r"\[(\d+)\]")


class Citation(BaseModel):
    number: int  # as the answer cites it: [number]
    item_id: int
    path: str


class Sources(BaseModel):
    """First event: the items the answer may use (numbered from 1 in this order)."""

    event: Literal["sources"] = "sources"
    sources: list[SearchHit]


class Token(BaseModel):
    """A piece of the answer as it is generated."""

    event: Literal["token"] = "token"
    text: str


class Answer(BaseModel):
    """Last event: the whole answer and what it cites."""

    event: Literal["answer"] = "answer"
    question: str
    answer: str
    found: bool  # False: nothing in the collection supported an answer
    citations: list[Citation]
    sources: list[SearchHit]
    generator: str
    truncated: bool  # the time budget or the token limit ended the answer
    seconds: float


AskEvent = Sources | Token | Answer


def cited(answer: str, sources: list[SearchHit]) -> list[Citation]:
    """The sources the answer cites as [n]; all of them when it cites none explicitly."""
    numbers = sorted({int(n) for n in _CITATION.findall(answer) if 1 <= int(n) <= len(sources)})
    numbers = numbers or list(range(1, len(sources) + 1))
    return [Citation(number=n, item_id=sources[n - 1].item_id, path=sources[n - 1].path) for n in numbers]


def answer_events(
    question: str,
    hits: list[SearchHit],
    candidates: dict[int, Candidate],
    generator: Generator,
    started: float,
    deadline: float,
    min_score: float = SUPPORT_FLOOR,
    max_new_tokens: int = 128,
) -> Iterator[AskEvent]:
    """The events of one answer: the sources, the answer's pieces, then the whole answer."""
    sources = [hit for hit in hits if hit.score >= min_score]
    yield Sources(sources=sources)
    pieces: list[str] = []
    if sources:
        for piece in generator.stream(question, [candidates[h.item_id] for h in sources], max_new_tokens, deadline):
            pieces.append(piece)
            yield Token(text=piece)
    text = "".join(pieces).strip()
    found = bool(sources) and NOT_FOUND not in text.lower()
    truncated = bool(sources) and (time.monotonic() >= deadline or len(pieces) >= max_new_tokens)
    yield Answer(
        question=question,
        answer=text if found else NOT_FOUND,
        found=found,
        citations=cited(text, sources) if found else [],
        sources=sources,
        generator=generator.version,
        truncated=truncated,
        seconds=round(time.monotonic() - started, 3),
    )
