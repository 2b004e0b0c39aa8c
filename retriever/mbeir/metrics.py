"""UniIR's Recall@k: a hit rate, not fractional recall.

For each query, Recall@k is 1 when any relevant did (qrels, relevance > 0) is among the first k
retrieved dids, else 0 (also 0 when the query has no relevant did). A (dataset, task) score is the
mean over its queries rounded to 4 decimals, reported x100; the benchmark average is the
unweighted mean over the (dataset, task) pairs. pyserini's ``recall.5`` and MTEB's nDCG are other
metrics and not comparable.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from retriever.mbeir.data import Qrels


def hit_at_k(relevant: Collection[str], ranked: Sequence[str], k: int) -> float:
    """1.0 if any relevant did is in the first ``k`` of ``ranked``; fewer than k retrieved is fine."""
    return 1.0 if set(relevant) & set(ranked[:k]) else 0.0


def recall_at_ks(ranked_by_qid: dict[str, Sequence[str]], qrels: Qrels, ks: Iterable[int]) -> dict[str, float]:
    """{"Recall@k": mean hit rate x100} over the queries in ``ranked_by_qid``, rounded like UniIR
    (the mean to 4 decimals, then x100)."""
    ks = list(ks)
    if not ranked_by_qid:
        return {f"Recall@{k}": 0.0 for k in ks}
    out = {}
    for k in ks:
        hits = [hit_at_k(qrels.relevant.get(qid, ()), ranked, k) for qid, ranked in ranked_by_qid.items()]
        out[f"Recall@{k}"] = round(round(sum(hits) / len(hits), 4) * 100, 2)
    return out


@dataclass
class TaskScore:
    dataset: str
    task_id: int
    pool: str  # "local" or "global"
    queries: int
    recall: dict[str, float]


def average(scores: Sequence[TaskScore]) -> dict[str, float]:
    """Unweighted mean over the (dataset, task) pairs of every Recall@k they all report."""
    if not scores:
        return {}
    shared = [m for m in scores[0].recall if all(m in s.recall for s in scores)]
    return {m: round(sum(s.recall[m] for s in scores) / len(scores), 2) for m in shared}


def write_run(out: TextIO, ranked: dict[str, Sequence[tuple[str, float]]], run_id: str, task_id: int) -> None:
    """TREC run lines as UniIR writes them: ``qid Q0 did rank score run_id task_id``."""
    for qid, hits in ranked.items():
        for rank, (did, score) in enumerate(hits, start=1):
            out.write(f"{qid} Q0 {did} {rank} {score} {run_id} {task_id}\n")


def run_id(task: str, pool: str, split: str, k: int) -> str:
    """UniIR's run id: mbeir_{task}_{union|single}_pool_{split}_k{k}."""
    return f"mbeir_{task}_{'union' if pool == 'global' else 'single'}_pool_{split}_k{k}"
