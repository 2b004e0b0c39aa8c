"""``moair eval``: retrieval quality on a benchmark (M-BEIR)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from api.render import err, escape, out, progress_bars
from indexer.errors import MoairError
from retriever.query import MAX_RERANK

eval_app = typer.Typer(help="Measure retrieval quality on a benchmark.", no_args_is_help=True)


@eval_app.command("mbeir")
def eval_mbeir(
    root: Path = typer.Option(
        ..., "--root", help="The M-BEIR folder (query/, cand_pool/, qrels/, instructions/, mbeir_images/)."
    ),
    work: Path = typer.Option(
        ..., "--work", help="Where pool indexes, rankings and results are kept; a rerun resumes from it."
    ),
    split: str = typer.Option("test", "--split", help="Query split: test, val or train."),
    tasks: str | None = typer.Option(
        None, "--tasks", help="Comma-separated tasks, e.g. mscoco_task0,cirr_task7 (default: UniIR's 16)."
    ),
    pool: str = typer.Option(
        "local", "--pool", help="local: each task's own pool (M-BEIR_local); global: the union pool."
    ),
    ks: str | None = typer.Option(
        None, "--k", help="Comma-separated k for Recall@k (default: 1,5,10; 10,20,50 for the fashion sets)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results JSON here."),
    run_file: Path | None = typer.Option(None, "--run-file", help="Also write the TREC run file here."),
    no_instruct: bool = typer.Option(False, "--no-instruct", help="Embed queries without UniIR's task instructions."),
    rerank: int = typer.Option(
        0,
        "--rerank",
        min=0,
        max=MAX_RERANK,
        help="Re-score the top N hits of each text query with the generator (see search --rerank).",
    ),
) -> None:
    """Recall@k on M-BEIR, computed as UniIR computes it (a hit rate per query, averaged per task
    and over tasks). Writes WORK/mbeir-SPLIT-POOL.{json,md,run} and prints the table."""
    from retriever.mbeir.data import EVALUATED_TASKS
    from retriever.mbeir.evaluate import evaluate

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else EVALUATED_TASKS
    try:
        k_list = [int(k) for k in ks.split(",")] if ks else None
    except ValueError:
        raise MoairError(f"--k takes whole numbers separated by commas, e.g. 1,5,10 (got {ks!r})") from None
    if k_list is not None and not all(k >= 1 for k in k_list):
        raise MoairError("--k values must be 1 or more")
    Path(work).mkdir(parents=True, exist_ok=True)
    with progress_bars(True) as new_bar:
        result = evaluate(root, work, split, task_list, pool, k_list, not no_instruct, progress=new_bar, rerank=rerank)
    stem = Path(work) / f"mbeir-{split}-{pool}"
    results_json = json.dumps(result.to_json(), indent=2)
    stem.with_suffix(".json").write_text(results_json)
    stem.with_suffix(".md").write_text(result.to_markdown())
    result.write_run_file(stem.with_suffix(".run"))
    if json_out:
        json_out.write_text(results_json)
    if run_file:
        result.write_run_file(run_file)
    for pool_file, report in result.pool_reports.items():
        for key, reason in report.skipped + report.failed:
            err.print(
                f"[yellow]skipped candidate[/yellow] {escape(key)} ({escape(pool_file)}): {escape(reason)}",
                soft_wrap=True,
            )
    out.print(result.to_markdown(), highlight=False, markup=False)
