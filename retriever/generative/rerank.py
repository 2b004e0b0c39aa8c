"""Generative rerank: the top hits of a search re-scored by a generative model as P("Yes") that the
item matches the query, within a time budget."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from indexer.records import ItemRecord, SearchHit
from retriever.generative.records import Candidate, Generator

BATCH = 4  # candidates judged per call: the deadline is checked between batches


def candidate(record: ItemRecord) -> Candidate:
    """What a generator reads of a stored item: its description (given text and the retrieval
    verbalization), its first readable image file and what the experts saw."""
    description = "\n".join(part for part in (record.verbalization.given_text, record.verbalization.retrieval) if part)
    image = next((p for p in record.paths if "image" in record.modality and Path(p).is_file()), None)
    return Candidate(item_id=record.item_id, description=description, image_path=image, perception=record.perception)


def rerank(
    hits: Sequence[SearchHit],
    records: dict[int, ItemRecord],
    query: str,
    generator: Generator,
    top: int,
    deadline: float | None,
) -> list[SearchHit]:
    """``hits`` with the first ``top`` ordered by the generator's P("Yes") (ties: the retrieval
    score) and that probability in ``rerank_score``; when the deadline comes first, only the hits
    judged by then are reordered, among themselves, and the rest keep their retrieval order."""
    head, judged = list(hits[:top]), []
    for start in range(0, len(head), BATCH):
        if deadline is not None and time.monotonic() >= deadline:
            break
        batch = head[start : start + BATCH]
        scores = generator.judge(query, [candidate(records[h.item_id]) for h in batch])
        judged += [h.model_copy(update={"rerank_score": round(float(s), 4)}) for h, s in zip(batch, scores)]
    judged.sort(key=lambda h: (-h.rerank_score, -h.score))
    ordered = judged + head[len(judged) :] + list(hits[top:])
    return [h.model_copy(update={"rank": rank}) for rank, h in enumerate(ordered, start=1)]
