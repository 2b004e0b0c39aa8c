"""M-BEIR with the engine: an index per candidate pool, queries by modality, UniIR's metric.

Each candidate pool becomes an index in ``WORK_DIR/pools/`` (candidates are entries keyed by
did: text, image or both), so a killed run resumes where its index stopped, and each finished
task's ranking is kept in ``WORK_DIR/runs/`` and reused. A query is searched with its task's
candidate modality as a filter (``Engine.search(modality=...)``, a FAISS id selector), so in the
union pool the engine never returns a candidate of the wrong modality; UniIR searches the whole
pool and counts such candidates as misses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from indexer.errors import MoairError
from indexer.experts import DEFAULT_EXPERTS
from indexer.pipeline import ProgressCallback
from indexer.records import Entry, IndexReport
from retriever.engine import Engine
from retriever.mbeir.data import (
    EVALUATED_TASKS,
    Candidate,
    Layout,
    Query,
    TaskName,
    candidate_modality,
    format_string,
    instruction_for,
    query_text,
    read_instructions,
    read_jsonl,
    read_qrels,
)
from retriever.mbeir.metrics import TaskScore, average, recall_at_ks, run_id, write_run
from retriever.query import MAX_K

Progress = Callable[[str], ProgressCallback | None]  # label -> callback(done, total), or None


@dataclass
class EvalResult:
    tasks: list[TaskScore]
    average: dict[str, float]
    pool_reports: dict[str, IndexReport] = field(default_factory=dict)  # pool file -> what indexing did
    runs: dict[str, tuple[int, dict[str, list[tuple[str, float]]]]] = field(
        default_factory=dict
    )  # run id -> (task id, ranking)

    def write_run_file(self, path: Path) -> None:
        """All rankings as one TREC run file, UniIR's line format."""
        with open(path, "w") as out:
            for name, (task_id, ranked) in self.runs.items():
                write_run(out, ranked, name, task_id)

    def to_json(self) -> dict:
        tasks = [
            {
                "dataset": t.dataset,
                "task_id": t.task_id,
                "task": f"{t.dataset}_task{t.task_id}",
                "pool": t.pool,
                "queries": t.queries,
                **t.recall,
            }
            for t in self.tasks
        ]
        return {"tasks": tasks, "average": self.average}

    def to_markdown(self) -> str:
        metrics = list(dict.fromkeys(m for t in self.tasks for m in t.recall))
        lines = ["| task | pool | queries | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
        for t in self.tasks:
            values = " | ".join(f"{t.recall[m]:.2f}" if m in t.recall else "" for m in metrics)
            lines.append(f"| {t.dataset}_task{t.task_id} | {t.pool} | {t.queries} | {values} |")
        values = " | ".join(f"{self.average[m]:.2f}" if m in self.average else "" for m in metrics)
        lines.append(f"| **average** | | | {values} |")
        return "\n".join(lines) + "\n"


def evaluate(
    root: Path,
    work: Path,
    split: str = "test",
    tasks: Sequence[str] = EVALUATED_TASKS,
    pool: str = "local",
    ks: Sequence[int] | None = None,
    instruct: bool = True,
    progress: Progress = lambda label: None,
    experts: Sequence[str] = DEFAULT_EXPERTS,
    rerank: int = 0,
) -> EvalResult:
    """Recall@k per (dataset, task) and averaged, UniIR's way. ``pool``: "local" (each task's own
    pool, M-BEIR_local) or "global" (the union pool); ``ks`` defaults to each task's UniIR list;
    ``experts`` are the perception experts of new pool indexes (an ablation drops one); ``rerank``
    N re-scores the top N hits of each query with text by the generator (``Engine.search``)."""
    if pool not in ("local", "global"):
        raise MoairError(f"pool must be local or global, got {pool!r}")
    task_names = [TaskName.parse(name) for name in tasks]  # every name checked before any work
    run = _Evaluation(Layout(Path(root)), Path(work), split, pool, instruct, progress, experts, rerank)
    with run.engines:
        for task in task_names:
            run.evaluate_task(task, sorted(set(ks or task.ks)))
    run.result.average = average(run.result.tasks)
    return run.result


class _Evaluation:
    """One ``evaluate`` call: the open pool indexes and the results so far."""

    def __init__(
        self,
        layout: Layout,
        work: Path,
        split: str,
        pool: str,
        instruct: bool,
        progress: Progress,
        experts: Sequence[str],
        rerank: int = 0,
    ) -> None:
        self.layout, self.work, self.split, self.pool, self.progress = layout, work, split, pool, progress
        self.experts, self.rerank = experts, rerank
        self.instructions = read_instructions(layout.instructions()) if instruct else None
        self.result = EvalResult(tasks=[], average={})
        self.engines = ExitStack()
        self._open: dict[Path, Engine] = {}

    def evaluate_task(self, task: TaskName, ks: list[int]) -> None:
        pool_file = (
            self.layout.local_pool(task, self.split) if self.pool == "local" else self.layout.union_pool(self.split)
        )
        candidates = {c.did: c for c in read_jsonl(pool_file, Candidate)}
        query_file = self.layout.queries(task, self.split)
        queries = read_jsonl(query_file, Query)
        qrels = read_qrels(self.layout.qrels(task, self.split))
        depth = min(max(ks), MAX_K)
        name = run_id(str(task), self.pool, self.split, depth) + (
            "" if self.instructions is not None else "_noinstruct"
        )
        name += f"_rerank{self.rerank}" if self.rerank else ""
        cached = self.work / "runs" / f"{name}.json"
        if cached.exists():
            ranked = {
                qid: [(did, score) for did, score in hits] for qid, hits in json.loads(cached.read_text()).items()
            }
        else:
            engine = self.engine_for(pool_file, candidates)
            ranked = self.rank(engine, task, query_file, queries, candidates, depth, self.progress(str(task)))
            _write_atomically(cached, json.dumps(ranked))
        recall = recall_at_ks({qid: [did for did, _ in hits] for qid, hits in ranked.items()}, qrels, ks)
        self.result.tasks.append(TaskScore(task.dataset, task.task_id, self.pool, len(queries), recall))
        self.result.runs[name] = (task.task_id, ranked)

    def engine_for(self, pool_file: Path, candidates: dict[str, Candidate]) -> Engine:
        """The pool's index, brought up to date once per run (candidates already in it are skipped)."""
        if pool_file not in self._open:
            index = self.work / "pools" / f"{pool_file.stem}.moair"
            engine = self.engines.enter_context(Engine.open(index, create=True, experts=self.experts))
            entries = [self.entry(c) for c in candidates.values()]
            self.result.pool_reports[str(pool_file)] = engine.add_entries(
                entries, self.progress(f"indexing {pool_file.stem}")
            )
            self._open[pool_file] = engine
        return self._open[pool_file]

    def entry(self, candidate: Candidate) -> Entry:
        """A candidate as UniIR embeds it: ``format_string`` text, image path under the root."""
        text = format_string(candidate.txt) or None
        image = self.layout.root / candidate.img_path if candidate.img_path else None
        if text is None and image is None:
            raise MoairError(f"candidate {candidate.did} has neither txt nor img_path")
        return Entry(key=candidate.did, text=text, image=image)

    def rank(
        self,
        engine: Engine,
        task: TaskName,
        query_file: Path,
        queries: list[Query],
        candidates: dict[str, Candidate],
        depth: int,
        progress: ProgressCallback | None,
    ) -> dict[str, list[tuple[str, float]]]:
        """The top ``depth`` (did, score) of every query, searched within its task's candidate modality."""
        ranked = {}
        for done, query in enumerate(queries, start=1):
            modality = candidate_modality(query, candidates, task)
            instruction = instruction_for(query, modality, self.instructions) if self.instructions is not None else None
            text = query_text(query, instruction) or None
            image = self.layout.root / query.query_img_path if query.query_img_path else None
            if text is None and image is None:
                raise MoairError(f"{query_file}: query {query.qid} has neither query_txt nor query_img_path")
            try:
                hits = engine.search(text, image=image, k=depth, modality=modality, rerank=self.rerank if text else 0)
            except MoairError as e:
                raise MoairError(f"{query_file}: query {query.qid}: {e}") from None
            # Candidates with the same content are one item; each of their dids is a result.
            ranked[query.qid] = [(did, hit.score) for hit in hits for did in (hit.path, *hit.other_paths)][:depth]
            if progress:
                progress(done, len(queries))
        return ranked


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
