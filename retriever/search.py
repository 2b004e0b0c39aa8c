"""The search path once a query is one composed row (``retriever.engine`` composes it): the
modality selector, the vector index's top-k, vector ids to item ids, the score cuts, and the
hits with their per-block contributions and evidence."""

from __future__ import annotations

import numpy as np

from indexer.records import Perception, SearchHit
from indexer.store import Store
from retriever.evidence import evidence


def top_k(store: Store, queries: np.ndarray, k: int, modality: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, item ids) per query row; ids are -1 past the end of a small index. With
    ``modality``, only items holding exactly that are searched (a FAISS id selector); the GPU copy,
    which takes no selector, serves the others."""
    scores, vector_ids, _ = _search(store, queries, k, modality, with_rows=False)
    return scores, store.catalog.item_ids(vector_ids)


def _search(
    store: Store, queries: np.ndarray, k: int, modality: str | None, with_rows: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    k = max(1, min(k, len(store))) if len(store) else 1
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    allowed = store.catalog.vector_ids_with_modality(modality) if modality is not None else None
    if with_rows:
        return store.vectors.search_with_rows(queries, k, allowed, gpu=allowed is None)
    return *store.vectors.search(queries, k, allowed, gpu=allowed is None), None


def cut_by_score(
    found: list[tuple[float, int]], min_score: float | None, max_drop: float | None
) -> list[tuple[float, int]]:
    """(score, id) pairs, best first, kept while at or above ``min_score`` and until the first
    fall of more than ``max_drop`` from one hit to the next. Works on any index's ranking."""
    kept: list[tuple[float, int]] = []
    for score, item_id in found:
        if min_score is not None and score < min_score:
            break
        if max_drop is not None and kept and kept[-1][0] - score > max_drop:
            break
        kept.append((score, item_id))
    return kept


def search_hits(
    store: Store,
    query: np.ndarray,
    k: int,
    modality: str | None,
    min_score: float | None,
    max_drop: float | None,
    text: str | None,
    perception: Perception | None,
) -> list[SearchHit]:
    """Search with one composed query row and describe the hits (the evidence of the query's
    ``text`` and, for an image query, its ``perception``)."""
    scores, vector_ids, rows = _search(store, query[None], k, modality, with_rows=True)
    ids = store.catalog.item_ids(vector_ids)[0]
    live = [position for position, item_id in enumerate(ids) if item_id >= 0]
    # cut on the scores as shown (4 decimals), so a shown score used as --min-score keeps its hit
    found = cut_by_score([(round(float(scores[0][p]), 4), int(ids[p])) for p in live], min_score, max_drop)
    item_ids = [i for _, i in found]
    # the rows the search read (a cut keeps a prefix of the ranking), not a second read
    contributions = store.query_layout.contributions(query, rows[0][live[: len(found)]])
    records = {r.item_id: r for r in store.catalog.items(item_ids)}
    hits = []
    for rank, ((score, item_id), parts_score) in enumerate(zip(found, contributions), start=1):
        record = records[item_id]
        hits.append(
            SearchHit(
                rank=rank,
                item_id=item_id,
                path=record.paths[0] if record.paths else "",
                score=score,
                contributions=parts_score,
                evidence=evidence(record, text, perception),
                other_paths=record.paths[1:],
            )
        )
    return hits
