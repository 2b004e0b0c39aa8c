"""Retrieval quality on moair's development set, by query type and split, with UniIR-style
instructions and without, an expert ablation, and optionally a baseline version in the same run.

The set (``benchmarks/devset.py``): the 20 sample photos and 59 Debian wallpapers (real photos
and abstract artwork), signs drawn onto photos (English, and Korean in Nanum fonts), rendered captions and photo
edits; 139 queries written by looking at the images, split by a hash of each query into dev (tune on it) and test
(report on it). It is written as an M-BEIR folder (text->image as mscoco_task0, image->image as
nights_task4, image+text->image as cirr_task7; dev queries in the val split, test queries in the
test split) and run through ``moair eval mbeir`` as a user would.

Run:   .venv/bin/python benchmarks/bench_quality.py [--baseline DIR]
       (DIR: a checkout of another moair version, e.g. made with `git worktree add DIR REV`)
Writes benchmarks/results/quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from devset import Query, all_queries, build_images, candidates  # noqa: E402

from indexer.experts import DEFAULT_EXPERTS  # noqa: E402
from retriever.mbeir.data import Layout, Qrels, TaskName  # noqa: E402
from retriever.mbeir.evaluate import evaluate  # noqa: E402
from retriever.mbeir.metrics import recall_at_ks  # noqa: E402

RESULTS = Path(__file__).parent / "results"
KS = [1, 5, 10]
SPLITS = {"dev": "val", "test": "test"}  # the set's split -> the M-BEIR split it is written as
# (M-BEIR task, dataset id, task id) per query modality
TASKS = {"text": ("mscoco_task0", "9", 0), "image": ("nights_task4", "4", 4), "image,text": ("cirr_task7", "8", 7)}
# Instructions in the style of UniIR's query_instructions.tsv (several per task; the first is used).
INSTRUCTIONS = [
    (
        "text",
        "image",
        "MSCOCO",
        "9",
        "Find me an everyday image that matches the given caption.",
        "Identify the image showcasing the described everyday scene.",
    ),
    (
        "image",
        "image",
        "NIGHTS",
        "4",
        "Find a day-to-day image that looks similar to the provided image.",
        "Which everyday image is the most similar to the reference image?",
    ),
    (
        "image,text",
        "image",
        "CIRR",
        "8",
        "Retrieve a day-to-day image that aligns with the modification instructions of the provided image.",
        "Pull up a common image that reflects the changes described for the given picture.",
    ),
]
TASK_NAMES = ",".join(task for task, _, _ in TASKS.values())


def write_set(root: Path, images: dict[str, Path]) -> dict[str, Query]:
    """The M-BEIR folder of the set under ``root``; returns qid -> query."""
    pool_names = candidates()
    by_qid: dict[str, Query] = {}
    counters: dict[str, int] = defaultdict(int)
    records: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for query in all_queries():
        task, dataset, _ = TASKS[query.modality]
        qid = f"{dataset}:{counters[dataset]}"
        counters[dataset] += 1
        by_qid[qid] = query
        records[task, SPLITS[query.split]].append(
            {
                "qid": qid,
                "query_txt": query.text,
                "query_img_path": str(images[query.image]) if query.image else None,
                "query_modality": query.modality,
                "query_src_content": None,
                "pos_cand_list": [f"{dataset}:{pool_names.index(name)}" for name in query.relevant],
                "neg_cand_list": [],
            }
        )
    for task, dataset, task_id in TASKS.values():
        pool = [
            {
                "did": f"{dataset}:{n}",
                "txt": None,
                "img_path": str(images[name]),
                "modality": "image",
                "src_content": None,
            }
            for n, name in enumerate(pool_names)
        ]
        for split in SPLITS.values():
            _write_jsonl(Layout(root).local_pool(TaskName.parse(task), split), pool)  # MSCOCO names its test pool apart
            queries = records[task, split]
            _write_jsonl(root / "query" / split / f"mbeir_{task}_{split}.jsonl", queries)
            qrels = "".join(f"{r['qid']} 0 {did} 1 {task_id}\n" for r in queries for did in r["pos_cand_list"])
            (root / "qrels" / split).mkdir(parents=True, exist_ok=True)
            (root / "qrels" / split / f"mbeir_{task}_{split}_qrels.txt").write_text(qrels)
    (root / "instructions").mkdir(parents=True, exist_ok=True)
    lines = ["query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2"]
    lines += ["\t".join(row) for row in INSTRUCTIONS]
    (root / "instructions" / "query_instructions.tsv").write_text("\n".join(lines) + "\n")
    return by_qid


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_run(run_file: Path) -> dict[str, list[str]]:
    """qid -> ranked dids from a TREC run file."""
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line in run_file.read_text().splitlines():
        qid, _, did, rank, *_ = line.split()
        ranked[qid].append((int(rank), did))
    return {qid: [did for _, did in sorted(hits)] for qid, hits in ranked.items()}


def by_type(
    ranked: dict[str, list[str]], queries: dict[str, Query], root: Path
) -> dict[str, dict[str, dict[str, float]]]:
    """split -> query type -> Recall@k; "text to image" and "all" are added per split."""
    relevant: dict[str, list[str]] = {}
    for qrels_file in root.glob("qrels/*/*.txt"):
        for line in qrels_file.read_text().splitlines():
            qid, _, did, _, _ = line.split()
            relevant.setdefault(qid, []).append(did)
    qrels = Qrels(relevant=relevant)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for split in SPLITS:
        groups: dict[str, dict[str, list[str]]] = defaultdict(dict)
        for qid, query in queries.items():
            if query.split != split:
                continue
            hits = ranked.get(qid, [])
            groups[query.kind][qid] = hits
            if query.modality == "text":
                groups["text to image"][qid] = hits
            groups["all"][qid] = hits
        table[split] = {
            kind: {**recall_at_ks(group, qrels, KS), "queries": len(group)} for kind, group in groups.items()
        }
    return table


def run_cli(code: Path, root: Path, work: Path, instruct: bool) -> dict[str, list[str]]:
    """Rankings of every query, from ``moair eval mbeir`` of the moair checkout at ``code``."""
    ranked = {}
    for split in SPLITS.values():
        run_file = work / f"{split}-{'instructions' if instruct else 'plain'}.run"
        command = [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(code)!r}); from api.cli import main; main()",
            "eval",
            "mbeir",
            "--root",
            str(root),
            "--work",
            str(work),
            "--split",
            split,
            "--tasks",
            TASK_NAMES,
            "--run-file",
            str(run_file),
        ]
        subprocess.run(
            command + ([] if instruct else ["--no-instruct"]), check=True, cwd=code, capture_output=True, text=True
        )
        ranked.update(read_run(run_file))
    return ranked


def rankings(root: Path, work: Path, **options) -> dict[str, list[str]]:
    """Rankings of every query of both splits, from ``evaluate`` in this process (``options``:
    its experts, instruct, rerank)."""
    ranked = {}
    for split in SPLITS.values():
        result = evaluate(root, work, split=split, tasks=TASK_NAMES.split(","), ks=KS, **options)
        for _, hits in result.runs.values():
            ranked.update({qid: [did for did, _ in ranking] for qid, ranking in hits.items()})
    return ranked


def ablation(root: Path, work: Path) -> dict[str, dict[str, list[str]]]:
    """Rankings with each expert off in turn (this checkout, instructions on)."""
    configs = {f"without {e}": [x for x in DEFAULT_EXPERTS if x != e] for e in DEFAULT_EXPERTS}
    return {name: rankings(root, work / name.replace(" ", "-"), experts=experts) for name, experts in configs.items()}


def cell(recall: dict[str, float] | None) -> str:
    return "–" if recall is None else f"{recall['Recall@1']:.0f} / {recall['Recall@5']:.0f} / {recall['Recall@10']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline", type=Path, help="a checkout of the moair version to compare with, run in the same session"
    )
    parser.add_argument("--no-ablation", action="store_true", help="skip the expert ablation")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    columns: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "M-BEIR"
        queries = write_set(root, build_images(Path(tmp) / "images"))
        versions = {"this version": here} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        for label, code in versions.items():
            for instruct in (True, False):
                name = f"{label}, {'instructions' if instruct else 'no instructions'}"
                columns[name] = by_type(
                    run_cli(code, root, Path(tmp) / label.replace(" ", "-"), instruct), queries, root
                )
                print(name, {split: cell(t["all"]) for split, t in columns[name].items()}, flush=True)
        if not args.no_ablation:
            for name, ranked in ablation(root, Path(tmp) / "ablation").items():
                columns[name] = by_type(ranked, queries, root)
                print(name, {split: cell(t["all"]) for split, t in columns[name].items()}, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(columns, indent=2, ensure_ascii=False))
    kinds = list(dict.fromkeys(kind for table in columns.values() for split in table.values() for kind in split))
    kinds = [k for k in kinds if k not in ("text to image", "all")] + ["text to image", "all"]
    lines = ["Recall@1 / @5 / @10 (x100) by query type on moair's development set (benchmarks/devset.py).", ""]
    for split in SPLITS:
        lines += [
            f"### {split} split",
            "",
            "| query type | queries | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for kind in kinds:
            first = next(iter(columns.values()))[split].get(kind)
            if first is None:
                continue
            lines.append(
                f"| {kind} | {first['queries']} | "
                + " | ".join(cell(t[split].get(kind)) for t in columns.values())
                + " |"
            )
        lines.append("")
    (RESULTS / "quality.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
