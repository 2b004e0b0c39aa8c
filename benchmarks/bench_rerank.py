"""What generative rerank does on the CPU default: Recall@1/5 of the development set
(``benchmarks/devset.py``: real photos, hand-judged queries; both splits) with and without ``--rerank``,
and the generator's latency per candidate on this machine.

The same pool indexes serve both runs (the plain ranking is computed first, so the reranked run
differs only by the re-scoring). Image-only queries are not reranked (the generator is asked
whether an item matches a text).

Run: .venv/bin/python benchmarks/bench_rerank.py [--rerank 10]
Writes benchmarks/results/rerank.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench_quality import SPLITS, by_type, rankings, write_set
from devset import build_images

from retriever import Engine
from retriever.generative.rerank import candidate

RESULTS = Path(__file__).parent / "results"


def latency(work: Path, repeats: int = 3) -> dict[str, float]:
    """Seconds per candidate of the generator's judge, for a batch of 1 and of 10 candidates,
    and of a plain vs a reranked (10) search."""
    index = next((work / "test" / "pools").glob("*.moair"))
    with Engine.open(index) as engine:
        hits = engine.search("a dog", k=10)
        records = engine.store.catalog.items([h.item_id for h in hits])
        candidates = [candidate(r) for r in records]
        generator = engine.generator()
        generator.judge("a dog", candidates[:1])  # warm up
        timings = {}
        for size in (1, 10):
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                generator.judge("a dog", candidates[:size])
                runs.append((time.perf_counter() - started) / size)
            timings[f"judge_seconds_per_candidate_batch{size}"] = statistics.median(runs)
        for name, rerank in (("search_seconds", 0), ("search_rerank10_seconds", 10)):
            runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                engine.search("a dog next to a bicycle", k=10, rerank=rerank)
                runs.append(time.perf_counter() - started)
            timings[name] = statistics.median(runs)
        timings["generator"] = generator.version
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rerank", type=int, default=10, help="hits re-scored per query")
    args = parser.parse_args()
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "M-BEIR", Path(tmp) / "work"
        queries = write_set(root, build_images(Path(tmp) / "images"))
        for name, rerank in (("retrieval only", 0), (f"rerank top {args.rerank}", args.rerank)):
            started = time.perf_counter()
            by_split = by_type(rankings(root, work, instruct=False, rerank=rerank), queries, root)
            table[name] = {f"{kind} ({split})": recall for split in SPLITS for kind, recall in by_split[split].items()}
            table[name]["seconds"] = round(time.perf_counter() - started, 1)
            print(name, table[name]["all (test)"], table[name]["seconds"], "s")
        timings = latency(work)
    report = {"cores": os.cpu_count(), "rerank": args.rerank, "recall": table, "latency": timings}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rerank.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    kinds = [kind for kind in next(iter(table.values())) if kind != "seconds"]
    lines = [
        f"Recall@1 / @5 / @10 (x100) on the development set, {os.cpu_count()} cores; generator {timings['generator']}.",
        "",
        "| query type | " + " | ".join(table) + " |",
        "|---|" + "---|" * len(table),
    ]
    for kind in kinds:
        lines.append(
            f"| {kind} | "
            + " | ".join(
                f"{t[kind]['Recall@1']:.0f} / {t[kind]['Recall@5']:.0f} / {t[kind]['Recall@10']:.0f}"
                for t in table.values()
            )
            + " |"
        )
    lines += [
        "",
        f"Judging one candidate: {timings['judge_seconds_per_candidate_batch1'] * 1000:.0f} ms alone, "
        f"{timings['judge_seconds_per_candidate_batch10'] * 1000:.0f} ms each in a batch of 10. A text search: "
        f"{timings['search_seconds'] * 1000:.0f} ms plain, {timings['search_rerank10_seconds'] * 1000:.0f} ms with "
        "--rerank 10 "
        f"({timings['search_rerank10_seconds'] / timings['search_seconds']:.1f}x).",
    ]
    (RESULTS / "rerank.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
