"""The options several ``moair`` commands share, and what they set."""

from __future__ import annotations

import typer

IndexOption = typer.Option(..., "--index", "-i", envvar="MOAIR_INDEX", help="Index directory (or set MOAIR_INDEX).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bars.")
DeviceOption = typer.Option(
    "auto",
    "--device",
    envvar="MOAIR_DEVICE",
    help="Where a checkpoint backbone runs: auto (CUDA when there is a GPU), cpu, cuda, cuda:1.",
)
DtypeOption = typer.Option(
    "auto",
    "--dtype",
    envvar="MOAIR_DTYPE",
    help="A checkpoint backbone's precision: auto (float16 on a GPU), float32, float16, bfloat16.",
)
IndexTypeOption = typer.Option(
    None,
    "--index-type",
    help="Vector index: auto (exact Flat while small, IVF with HNSW quantizer and SQ/PQ codes when large) or a faiss"
    " index_factory string, e.g. Flat, IVF4096_HNSW32,SQ8, OPQ64_256,IVF4096_HNSW32,PQ64, HNSW32. Kept by the index.",
)
MemoryBudgetOption = typer.Option(
    None,
    "--memory-budget",
    help="Memory the vector index may take, e.g. 2GiB (auto type; default: a quarter of exact Flat's).",
)
RecallTargetOption = typer.Option(
    None,
    "--recall-target",
    min=0.01,
    max=1.0,
    help="Recall@10 against exact search that nprobe/efSearch are tuned to (default 0.95).",
)


def configure(engine, index_type: str | None, memory_budget: str | None, recall_target: float | None) -> None:
    from indexer.ann import parse_size

    if index_type is not None or memory_budget is not None or recall_target is not None:
        engine.configure(index_type, parse_size(memory_budget) if memory_budget else None, recall_target)
