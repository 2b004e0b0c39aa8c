"""A check shared by the rerank tests of each generator."""

from __future__ import annotations

from indexer.records import SearchHit


def reranked_checked(engine, query: str, k: int) -> list[SearchHit]:
    """``engine.search(query, k, rerank=k)``, checked to hold the same hits as the plain search,
    each with a probability, in falling order of it, ranked from 1."""
    plain = engine.search(query, k=k)
    reranked = engine.search(query, k=k, rerank=k)
    assert sorted(h.item_id for h in reranked) == sorted(h.item_id for h in plain)
    scores = [h.rerank_score for h in reranked]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert [h.rank for h in reranked] == list(range(1, len(reranked) + 1))
    return reranked
