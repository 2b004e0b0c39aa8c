"""The ``moair`` command line: index, search, stats, remove, optimize, inspect, serve, demo, eval."""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer
from rich.console import Console
from rich.markup import escape as escape_markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from indexer.errors import MoairError
from indexer.experts import DEFAULT_EXPERTS
from indexer.pipeline import IndexReport, ProgressCallback
from indexer.records import SearchHit, shown_path

app = typer.Typer(
    help="moair: index a photo collection and search it by text (English or Korean), by image, or both.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
MAX_CONNECTIONS = 512  # open connections and requests in flight the server takes; more get 503
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape(text: str) -> str:
    """Text for the terminal: rich markup escaped, and control characters (an ANSI escape in a
    file name would recolour or rewrite the terminal) and the bytes of a name that are not UTF-8
    shown as \\xNN."""
    return escape_markup(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", shown_path(text)))


IndexOption = typer.Option(..., "--index", "-i", envvar="MOAIR_INDEX", help="Index directory (or set MOAIR_INDEX).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
DeviceOption = typer.Option(
    "auto", "--device", envvar="MOAIR_DEVICE", help="Where a checkpoint backbone runs: auto (CUDA when there is a GPU), cpu, cuda, cuda:1."
)
DtypeOption = typer.Option(
    "auto", "--dtype", envvar="MOAIR_DTYPE", help="A checkpoint backbone's precision: auto (float16 on a GPU), float32, float16, bfloat16."
)
IndexTypeOption = typer.Option(
    None,
    "--index-type",
    help="Vector index: auto (exact Flat while small, IVF with HNSW quantizer and SQ/PQ codes when large) or a faiss"
    " index_factory string, e.g. Flat, IVF4096_HNSW32,SQ8, OPQ64_256,IVF4096_HNSW32,PQ64, HNSW32. Kept by the index.",
)
MemoryBudgetOption = typer.Option(
    None, "--memory-budget", help="Memory the vector index may take, e.g. 2GiB (auto type; default: a quarter of exact Flat's)."
)
RecallTargetOption = typer.Option(
    None, "--recall-target", min=0.01, max=1.0, help="Recall@10 against exact search that nprobe/efSearch are tuned to (default 0.95)."
)


def _configure(engine, index_type: Optional[str], memory_budget: Optional[str], recall_target: Optional[float]) -> None:
    from indexer.ann import parse_size

    if index_type is not None or memory_budget is not None or recall_target is not None:
        engine.configure(index_type, parse_size(memory_budget) if memory_budget else None, recall_target)


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[Callable[[str], Optional[ProgressCallback]]]:
    """Progress bars with ETA on stderr when it is a terminal: ``new_bar(label)`` gives the
    callback(done, total) of a new bar; without a terminal (or when disabled), None."""
    if not enabled or not err.is_terminal:
        yield lambda label: None
        return
    columns = [
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=False) as bars:

        def new_bar(label: str) -> ProgressCallback:
            task = bars.add_task(label, total=None)
            return lambda done, total: bars.update(task, completed=done, total=total)

        yield new_bar


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Optional[ProgressCallback]]:
    """One progress bar (see ``_progress_bars``)."""
    with _progress_bars(enabled) as new_bar:
        yield new_bar(label)


def _report_dict(report: IndexReport, items: int) -> dict:
    return {
        "added": report.added,
        "updated": report.updated,
        "linked": report.linked,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "skipped": [{"path": shown_path(p), "reason": r} for p, r in report.skipped],
        "skipped_before": report.skipped_before,
        "failed": [{"path": shown_path(p), "reason": r} for p, r in report.failed],
        "retried": report.retried,
        "interrupted": report.interrupted,
        "maintenance": report.maintenance,
        "seconds": round(report.seconds, 2),
        "images_per_second": round(report.images_per_second, 2),
        "items_in_index": items,
    }


def _print_report(report: IndexReport, items: int) -> None:
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/yellow] {escape(path)}: {escape(reason)}", highlight=False, soft_wrap=True)
    for path, reason in report.failed:
        err.print(f"[yellow]failed[/yellow] {escape(path)}: {escape(reason)} (tried again next run)", highlight=False, soft_wrap=True)
    line = (
        f"{report.added} added, {report.linked} linked (content already indexed), {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.skipped)} skipped"
    )
    if report.skipped_before:
        line += f" (+{report.skipped_before} bad files unchanged since an earlier run)"
    if report.failed:
        line += f", {len(report.failed)} failed (not read or analysed; tried again next run)"
    if report.retried:
        line += f", {report.retried} retried (failed in an earlier run)"
    if report.updated:
        line += f", {report.updated} re-analysed (indexed by older model versions)"
    line += f"; {items} items in the index; {report.seconds:.1f} s"
    if report.added or report.updated:
        line += f" ({report.images_per_second:.1f} images/s)"
    out.print(line, highlight=False, markup=False)
    if report.maintenance:
        out.print(report.maintenance, highlight=False, markup=False)
    if report.interrupted:
        err.print("[yellow]interrupted[/yellow]: everything analysed so far is saved; run the same command again to resume")


@app.command()
def index(
    paths: List[Path] = typer.Argument(..., help="Image files and folders (folders are walked recursively)."),
    index_path: Path = IndexOption,
    text_embedder: str = typer.Option("e5-small", help="Text embedder for a new index: e5-small (multilingual) or minilm (English)."),
    backbone: str = typer.Option(
        "efficientnet-lite3",
        help="Visual expert for a new index: efficientnet-lite3 (packaged, CPU), clip (a local CLIP or SigLIP checkpoint), "
        "openclip (a local open_clip model: its folder, or one weights file with --model-name), "
        "e5v (a local E5-V / LLaVA-NeXT checkpoint) or moai (a local MoAI-7B checkpoint, fed with the experts' verbalization); "
        "with a checkpoint backbone, text queries reach the image space too.",
    ),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="The checkpoint folder for --backbone clip, e5v or moai (config.json, *.safetensors, tokenizer and "
        "preprocessor files); for openclip, an open_clip folder (open_clip_config.json + weights) or one weights file "
        "(.safetensors, .pt, .bin) with --model-name."
    ),
    model_name: Optional[str] = typer.Option(
        None, "--model-name", help="For --backbone openclip with a single weights file: its open_clip architecture "
        "(e.g. ViT-B-32, ViT-B-16-SigLIP; see open_clip.list_models())."
    ),
    expert: List[str] = typer.Option(
        [], "--expert", help="Another perception expert from a local checkpoint folder, as NAME=DIR: owlv2 (open-world "
        "detection, MoAI's 1,847 names) or panoptic (Mask2Former COCO panoptic); repeat for both. For a new index.",
    ),
    without_expert: List[str] = typer.Option(
        [], "--without-expert", help=f"Leave a default perception expert out of a new index (repeat for more): "
        f"{', '.join(DEFAULT_EXPERTS)}. E.g. --without-expert hangul where Tesseract's Korean model is not installed.",
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    prune: bool = typer.Option(True, help="Drop files that were deleted from the given folders."),
    index_type: Optional[str] = IndexTypeOption,
    memory_budget: Optional[str] = MemoryBudgetOption,
    recall_target: Optional[float] = RecallTargetOption,
    as_json: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Build or update an index. Only new and changed files are analysed; content that is already
    indexed under another path is linked, not embedded again; bad files are skipped with a reason.
    The vector index follows the collection: exact while small, rebuilt as IVF when it grows."""
    from retriever import Engine

    expert_checkpoints = {}
    for given in expert:
        name, _, folder = given.partition("=")
        if not folder:
            raise MoairError(f"--expert takes NAME=DIR (e.g. owlv2=~/models/owlv2-base-patch16-ensemble), not {given!r}")
        expert_checkpoints[name.strip()] = Path(folder).expanduser()
    unknown = sorted(set(without_expert) - set(DEFAULT_EXPERTS))
    if unknown:
        raise MoairError(f"--without-expert takes one of {', '.join(DEFAULT_EXPERTS)}, not {', '.join(unknown)}")
    with Engine.open(
        index_path, create=True, text_embedder=text_embedder, backbone=backbone, checkpoint=checkpoint,
        experts=[name for name in DEFAULT_EXPERTS if name not in without_expert], expert_checkpoints=expert_checkpoints, device=device, dtype=dtype, model_name=model_name,
    ) as engine:
        _configure(engine, index_type, memory_budget, recall_target)
        with _progress(not quiet and not as_json, "indexing") as progress:
            report = engine.add(paths, progress=progress, prune=prune)
        items = len(engine)
    if as_json:
        print(json.dumps(_report_dict(report, items)))
    else:
        _print_report(report, items)
    if report.interrupted:
        raise typer.Exit(130)


def _print_hits(hits: list[SearchHit], reranked_by: str | None = None) -> None:
    if not hits:
        out.print("no results (the index is empty)")
        return
    table = Table(show_lines=False)
    columns = ("#", "score", "path", "caption / text / visual", "evidence")
    if reranked_by:
        columns = ("#", 'P("Yes")', *columns[1:])
    for column in columns:
        table.add_column(column, overflow="fold")
    for h in hits:
        c = h.contributions
        parts = " / ".join(f"{c.get(name, 0.0):+.3f}" for name in ("caption", "text", "visual"))
        cells = [str(h.rank), f"{h.score:.3f}", escape(h.path), parts, escape("; ".join(h.evidence))]
        if reranked_by:
            cells.insert(1, "not judged" if h.rerank_score is None else f"{h.rerank_score:.3f}")
        table.add_row(*cells)
    out.print(table)
    if reranked_by:
        judged = sum(h.rerank_score is not None for h in hits)
        out.print(f'ordered by P("Yes") from {reranked_by} ({judged} judged); score is the retrieval score', highlight=False)


@app.command()
def search(
    query: Optional[str] = typer.Argument(None, help="Text query, English or Korean. Quote words to match text in images."),
    index_path: Path = IndexOption,
    image: Optional[Path] = typer.Option(None, "--image", help="Query image (alone, or with the text for image + text search)."),
    k: int = typer.Option(10, "-k", "--k", min=1, max=1000, help="Number of results."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Drop hits scoring below this."),
    max_drop: Optional[float] = typer.Option(
        None, "--max-drop", help="End the list where the score falls by more than this from one hit to the next."
    ),
    modality: Optional[str] = typer.Option(None, "--modality", help="Only items that are image, text or image,text."),
    rerank: int = typer.Option(
        0, "--rerank", min=0, max=100, help="Re-score the top N hits of a text query with a generative model as P(\"Yes\") "
        "for \"Does this image match: QUERY?\" (MoAI when it is the index's backbone, else Gemma-3 270M over each item's "
        "description) and order them by it. Off by default: see the README for what it measured.",
    ),
    time_budget: Optional[float] = typer.Option(
        None, "--time-budget", min=0.001, help="Seconds the search (with --rerank) may take; hits not re-scored by then keep their order."
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    as_json: bool = JsonOption,
) -> None:
    """Search an index by text, by image, or both. Each hit shows its score, the per-expert
    contributions (caption / OCR text / visual) and the perceived facts that matched."""
    from retriever import Engine

    with Engine.open(index_path, device=device, dtype=dtype) as engine:
        hits = engine.search(
            query, image=image, k=k, modality=modality, min_score=min_score, max_drop=max_drop, rerank=rerank, time_budget=time_budget
        )
        reranked_by = engine.generator().version if any(h.rerank_score is not None for h in hits) else None
    if as_json:
        print(json.dumps([h.model_dump(mode="json") for h in hits], ensure_ascii=False))
    else:
        _print_hits(hits, reranked_by)


@app.command()
def stats(index_path: Path = IndexOption, as_json: bool = JsonOption) -> None:
    """What an index holds (items by kind, files, skipped files) and how it searches (index type,
    memory, expected recall against exact search)."""
    from retriever import Engine

    with Engine.open(index_path) as engine:
        info = engine.stats()
    if as_json:
        print(info.model_dump_json())
        return
    _print_stats(info)


@app.command()
def verify(index_path: Path = IndexOption, as_json: bool = JsonOption) -> None:
    """Check a whole index: SQLite's integrity, every item's stored vector and descriptions, the
    vector files' checksums, and FAISS against SQLite. Exit code 1 when something is wrong.
    Damaged or missing vector files are rebuilt from the database whenever an index opens (any
    later index, remove or optimize saves the repair); a damaged database needs its backup."""
    from retriever import Engine

    with Engine.open(index_path) as engine:
        report = engine.verify()
    if as_json:
        print(report.model_dump_json())
    else:
        for line in report.repaired:
            err.print(f"[yellow]repaired[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
        if report.repaired and not report.saved:
            err.print("the repair was made in memory; the next moair index, remove or optimize saves it", highlight=False)
        for line in report.problems:
            err.print(f"[red]problem[/red] {escape(line)}", highlight=False, soft_wrap=True)
        out.print("ok: the index is consistent" if report.ok else f"{len(report.problems)} problem(s): restore the index from a backup, "
                  "or build it again with moair index", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def _print_stats(info) -> None:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(info.items_by_modality.items())) or "none"
    search_kind = "exact" if info.exact else f"approximate, {info.search_knob}" if info.search_knob else "approximate"
    if info.reranked > 1:
        search_kind += f", the best {info.reranked}k candidates re-ranked with exact vectors from disk"
    if info.exact:
        recall = "1.000 (exact search)"
    else:
        recall = f"{info.recall_estimate:.3f} of exact search at {info.tuned_items} items (target {info.recall_target})"
    memory = _size(info.index_bytes)
    if info.flat_bytes:
        memory += f" ({info.index_bytes / info.flat_bytes:.0%} of exact Flat's {_size(info.flat_bytes)})"
    if info.memory_mapped_shards:
        memory += f"; {info.memory_mapped_shards} shard(s) memory-mapped"
    rows = [
        ("items", f"{info.items} ({kinds})"),
        ("paths and keys", str(info.paths)),
        ("skipped", f"{info.bad_files} bad files (remembered until they change), {info.failed} failed (tried again next run)"),
        ("index type", f"{info.index_type} ({'chosen automatically' if info.requested_index_type == 'auto' else 'as requested'}),"
         f" {info.dim} dimensions, {search_kind}"),
        ("shards", f"{info.shards}, {info.tombstones} tombstones (deleted or replaced vectors skipped at search)"),
        ("recall@10 estimate", recall),
        ("memory (vector index)", memory),
        ("on disk", f"{_size(info.faiss_file_bytes)} FAISS, {_size(info.database_bytes)} SQLite"),
        ("models", f"{info.text_embedder}, {info.backbone}; experts {', '.join(info.experts)}"),
        ("projection heads", ", ".join(f"{space} {version}" for space, version in info.heads.items()) or "none"),
    ]
    table = Table(show_header=False)
    for name, value in rows:
        table.add_row(name, escape(value))
    out.print(table)


@app.command()
def remove(
    paths: List[str] = typer.Argument(..., help="Indexed file paths (or entry keys) to take out of the index."),
    index_path: Path = IndexOption,
    as_json: bool = JsonOption,
) -> None:
    """Take files out of the index without touching them on disk (files deleted from disk leave
    at the next ``moair index`` of their folder). No rebuild: their vectors are skipped at search
    and dropped at the next compaction."""
    from retriever import Engine

    with Engine.open(index_path) as engine:
        removed = engine.remove(paths)
        items = len(engine)
    if as_json:
        print(json.dumps({"removed": removed, "items_in_index": items}))
    else:
        out.print(f"{removed} removed; {items} items in the index", highlight=False)


@app.command()
def optimize(
    index_path: Path = IndexOption,
    index_type: Optional[str] = IndexTypeOption,
    memory_budget: Optional[str] = MemoryBudgetOption,
    recall_target: Optional[float] = RecallTargetOption,
    as_json: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Rebuild the vector index from the stored vectors: deleted and replaced vectors dropped, the
    index type chosen again (or as given), trained on a fresh sample, nprobe/efSearch tuned to the
    recall target. Images are not analysed again. Safe to interrupt: the old index stays until
    the new one is saved."""
    from retriever import Engine

    with Engine.open(index_path) as engine:
        _configure(engine, index_type, memory_budget, recall_target)
        with _progress(not quiet and not as_json, "rebuilding vector index") as progress:
            summary = engine.optimize(progress=progress)
        info = engine.stats()
    if as_json:
        print(json.dumps({"summary": summary, "stats": info.model_dump()}))
        return
    out.print(summary, highlight=False, markup=False)
    _print_stats(info)


@app.command()
def ask(
    question: str = typer.Argument(..., help="A question about the collection, e.g. \"what is written on the sign?\"."),
    index_path: Path = IndexOption,
    k: int = typer.Option(5, "-k", "--k", min=1, max=50, help="Items retrieved to answer from."),
    min_score: float = typer.Option(
        0.0, "--min-score", help="Retrieval score an item needs to be used as a source (0: above chance level); with none, the answer is \"not found in the collection\"."
    ),
    time_budget: float = typer.Option(60.0, "--time-budget", min=0.001, help="Seconds for the whole answer; it stops where the budget ends."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    as_json: bool = JsonOption,
) -> None:
    """Answer a question from the collection: retrieve, then let a generative model (MoAI when it is
    the index's backbone, else Gemma-3 270M over the items' descriptions) answer from the items
    that match, citing them as [n]. The answer is printed as it is generated."""
    from retriever import Engine
    from retriever.generative.ask import Answer, Sources, Token

    with Engine.open(index_path, device=device, dtype=dtype) as engine:
        for event in engine.ask_stream(question, k=k, time_budget=time_budget, min_score=min_score):
            if as_json:
                if isinstance(event, Answer):
                    print(event.model_dump_json())
            elif isinstance(event, Sources):
                for number, hit in enumerate(event.sources, start=1):
                    err.print(f"[{number}] {escape(hit.path)} (item {hit.item_id}, score {hit.score:.3f})", highlight=False)
            elif isinstance(event, Token):
                out.print(event.text, end="", highlight=False, markup=False, soft_wrap=True)
            else:
                if not event.found:
                    out.print(event.answer, highlight=False)
                else:
                    out.print()
                    cites = ", ".join(f"[{c.number}] item {c.item_id} {c.path}" for c in event.citations)
                    err.print(f"cites {escape(cites)}" + (" (stopped by the time budget or length limit)" if event.truncated else "")
                              + f"; {event.generator}, {event.seconds:.1f} s", highlight=False, soft_wrap=True)


@app.command("train-head")
def train_head_command(
    triples: Optional[Path] = typer.Argument(
        None, help="A jsonl file of text triples, one per line: {\"query\": ..., \"positive\": ..., \"negative\": ...} "
        "(negative optional; SimCSE's sent0/sent1/hard_neg also read). Lines that are not usable are skipped and reported.",
    ),
    index_path: Path = IndexOption,
    space: List[str] = typer.Option(
        [], "--space", help="Train only this embedding space (repeatable): language (the text embedder: captions, OCR "
        "text, text queries) or visual (a cross-modal backbone's shared space). Default: every space the index has.",
    ),
    steps: int = typer.Option(300, "--steps", min=1, help="Optimiser steps (the best held-out step is kept)."),
    batch_size: int = typer.Option(32, "--batch-size", min=2, help="Triples per step; the other triples of a batch are the negatives."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split and the batches."),
    remove_heads: bool = typer.Option(False, "--remove", help="Search without projection heads again (of --space, or all)."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    as_json: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Fit a projection head with E5-V's text-only recipe (InfoNCE on cosine / 0.05 with in-batch
    and hard negatives) on text triples, and search the index through it from now on. The encoders
    stay frozen; a linear map per embedding space (starting as the identity) is trained, and the
    weights with the best held-out loss are kept. The stored vectors are projected again, nothing is
    re-embedded; --remove goes back. Needs torch (pip install 'moair[checkpoints]')."""
    from retriever import Engine

    if triples is None and not remove_heads:
        raise MoairError("give a triples file (jsonl), or --remove to drop the projection heads")
    with Engine.open(index_path, device=device, dtype=dtype) as engine:
        if remove_heads:
            engine.remove_heads(space or None)
            info = engine.stats()
            if as_json:
                print(json.dumps({"heads": info.heads}))
            else:
                out.print(f"projection heads now: {', '.join(f'{k} {v}' for k, v in info.heads.items()) or 'none'}", highlight=False)
            return
        from indexer.head import read_triples

        data = read_triples(triples)
        if data.problems and not as_json:
            err.print(f"[yellow]{escape(data.problem_summary())}[/yellow]", highlight=False, soft_wrap=True)
        with _progress_bars(not quiet and not as_json) as new_bar:
            bars: dict[str, Optional[ProgressCallback]] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = new_bar(stage)
                if bars[stage]:
                    bars[stage](done, total)

            reports = engine.train_head(data, spaces=space or None, progress=progress, steps=steps, batch_size=batch_size, seed=seed)
        info = engine.stats()
    if as_json:
        print(json.dumps({
            "triples": len(data), "skipped_lines": data.skipped, "problems": data.problems, "heads": info.heads,
            "reports": {name: report.model_dump() for name, report in reports.items()},
        }))
        return
    for name, report in reports.items():
        line = f"{name} head ({info.heads[name]}): {report.train_triples} training / {report.heldout_triples} held-out triples, best step {report.best_step}"
        if report.heldout_loss_before is not None:
            line += f"; held-out loss {report.heldout_loss_before:.3f} -> {report.heldout_loss_after:.3f}"
        if report.heldout_accuracy_before is not None:
            line += f", accuracy (positive above hard negative) {report.heldout_accuracy_before:.3f} -> {report.heldout_accuracy_after:.3f}"
        out.print(line + f"; {report.seconds:.1f} s", highlight=False, markup=False)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@app.command()
def inspect(
    item: str = typer.Argument(..., help="An indexed file path or an item id."),
    index_path: Path = IndexOption,
    as_json: bool = JsonOption,
) -> None:
    """Show what the experts saw in one item and how it was verbalized."""
    from retriever import Engine

    with Engine.open(index_path) as engine:
        record = engine.inspect(item)
    if as_json:
        print(record.model_dump_json())
        return
    p = record.perception
    out.print(f"[bold]item {record.item_id}[/bold]  {p.width}x{p.height}  {escape(', '.join(record.paths))}", highlight=False)
    out.print("objects: " + (", ".join(f"{d.label} {d.score:.2f} {list(d.box)}" for d in p.detections) or "none"), highlight=False, markup=False)
    out.print("tags: " + (", ".join(f"{t.label} {t.score:.2f}" for t in p.tags) or "none"), highlight=False, markup=False)
    out.print("text: " + (" | ".join(f"{t.text} ({t.score:.2f})" for t in p.text) or ("unreadable" if p.text_present else "none")), highlight=False, markup=False)
    out.print("colours: " + (", ".join(f"{c.name} {c.fraction:.0%}" for c in p.colors) or "none"), highlight=False, markup=False)
    out.print("relations: " + (", ".join(f"{r.subject} {r.predicate} {r.object}" for r in p.relations) or "none"), highlight=False, markup=False)
    out.print(f"\n[bold]MoAI verbalization[/bold]\n{escape(record.verbalization.moai.strip())}", highlight=False)
    out.print(f"\n[bold]retrieval phrasing[/bold]\n{escape(record.verbalization.retrieval)}", highlight=False)
    if record.verbalization.retrieval_ko:
        out.print(escape(record.verbalization.retrieval_ko), highlight=False)


# The demo's searches and the sample photo each must find first: the demo fails when one does not,
# so a broken install shows at once (CI runs it as a new user would).
DEMO_SEARCHES = [
    ("text", "a dog", "darknet-dog.jpg"),
    ("text", "two giraffes and a zebra", "darknet-giraffe.jpg"),
    ("text", "고양이", "skimage-chelsea.png"),  # Korean: "cat"
    ("text", "a person with a dog and a horse", "darknet-person.jpg"),
    ("text", "a page that says 'segmentation'", "skimage-page.png"),
    ("image", "darknet-dog.jpg", "darknet-dog.jpg"),
]


@app.command()
def demo(
    cache: Path = typer.Option(Path.home() / ".cache" / "moair", help="Where the sample photos and demo index go."),
    k: int = typer.Option(3, "-k", help="Results per query."),
    as_json: bool = JsonOption,
) -> None:
    """Index the bundled sample photos (from scikit-image, scikit-learn, matplotlib and Debian's
    darknet package) and run example searches in English, Korean and by image. It checks what a
    working install gives: every sample photo indexed, each search finding its photo first; if
    not, it says what differs and exits with 1."""
    from indexer.samples import SAMPLE_FILES, sample_photos
    from retriever import Engine

    folder, problems = sample_photos(cache)
    for w in problems:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False, soft_wrap=True)
    index_path = Path(cache).expanduser() / "demo.moair"
    results = []
    with Engine.open(index_path, create=True) as engine:
        with _progress(not as_json, "indexing samples") as progress:
            report = engine.add([folder], progress=progress, prune=True)
        items = len(engine)
        if not as_json:
            out.print(f"[bold]sample photos[/bold] in {escape(str(folder))}; index at {escape(str(index_path))}", highlight=False)
            _print_report(report, items)
        if items == 0:
            raise MoairError("the demo indexed none of the sample photos (see the reasons above); `moair doctor` checks the models")
        missing = [name for name in SAMPLE_FILES if engine.store.catalog.item_id_for_path(str(folder / name)) is None]
        if missing:
            problems.append(f"{len(missing)} of the {len(SAMPLE_FILES)} sample photos are not indexed: {', '.join(missing)}")
        for kind, query, expected in DEMO_SEARCHES:
            if kind == "image":
                query = str(folder / query)
            hits = engine.search(query, k=k) if kind == "text" else engine.search(image=query, k=k)
            found = Path(hits[0].path).name if hits else None
            if found != expected:
                problems.append(f"the {kind} search {query!r} found {found or 'nothing'} first, not {expected}")
            results.append({"kind": kind, "query": query, "expected": expected, "found": found, "hits": [h.model_dump() for h in hits]})
            if not as_json:
                mark = "[green]✓[/green]" if found == expected else "[red]✗[/red]"
                out.print(f"\n{mark} [bold]{kind} query:[/bold] {escape(query)} [dim](expected first: {expected})[/dim]", highlight=False)
                _print_hits(hits)
    if as_json:
        print(json.dumps(
            {"index": str(index_path), "report": _report_dict(report, items), "searches": results, "problems": problems},
            ensure_ascii=False,
        ))
    elif problems:
        for problem in problems:
            err.print(f"[red]demo check failed[/red]: {escape(problem)}", highlight=False, soft_wrap=True)
        err.print("this install does not give what a working one gives; `moair doctor` lists each model and its packages")
    else:
        out.print(f"\ndemo check passed: {len(SAMPLE_FILES)} sample photos indexed, {len(DEMO_SEARCHES)} searches found their photo first")
    if problems:
        raise typer.Exit(1)


@app.command()
def doctor(
    index_path: Optional[Path] = typer.Option(
        None, "--index", "-i", envvar="MOAIR_INDEX", help="Check the models of this index (checkpoint backbones and experts included)."
    ),
    generator: bool = typer.Option(False, "--generator", help="Also load the generative model (rerank, ask); Gemma's first load takes 1-2 minutes."),
    as_json: bool = JsonOption,
) -> None:
    """Show the state of the install: each model (experts, text embedders, backbones, generators),
    the versions of the packages it needs, and whether it loads and runs on a small image. Models
    that need a checkpoint folder are checked with --index. Exits with 1 when a model fails."""
    from retriever.doctor import check_install

    checks = check_install(index_path, generator=generator)
    if as_json:
        print(json.dumps([c.model_dump() for c in checks], ensure_ascii=False))
    else:
        table = Table()
        for column in ("model", "status", "packages"):
            table.add_column(column, overflow="fold")
        for c in checks:
            status = {True: f"[green]ok[/green] {c.seconds:.2f} s", False: "[red]FAILED[/red]", None: "[dim]not checked[/dim]"}[c.ok]
            packages = ", ".join(f"{name} {version or '(not installed)'}" for name, version in c.packages.items())
            table.add_row(f"{c.kind} {c.name}", status, escape(packages))
        out.print(table)
        for c in checks:
            if c.ok is False:
                err.print(f"[red]{c.kind} {c.name}[/red]: {escape(c.detail)}\n  fix: {escape(c.fix)}", highlight=False, soft_wrap=True)
            elif c.ok is None:
                out.print(f"[dim]{c.kind} {c.name}: {escape(c.detail)}[/dim]", highlight=False, soft_wrap=True)
    if any(c.ok is False for c in checks):
        raise typer.Exit(1)


@app.command()
def serve(
    index_path: Path = IndexOption,
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 127.0.0.1 keeps it to this machine."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    uploads: Optional[Path] = typer.Option(None, help="Folder for images added through the API (default: the uploads folder inside the index)."),
    cors_origin: List[str] = typer.Option(
        [], "--cors-origin", help="A web origin (e.g. https://photos.example.org) whose pages may call the API; repeat for more. Off by default."
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    max_time_budget: float = typer.Option(
        120.0, "--max-time-budget", min=0.001, help="Seconds of generative work (rerank, /ask answers) one request may take at most."
    ),
    allowed_host: List[str] = typer.Option(
        [], "--allowed-host", help="A host name clients use to reach this server (e.g. photos.example.org); repeat for more. "
        "IP addresses and localhost are always answered; other names are refused (DNS rebinding)."
    ),
) -> None:
    """Serve the index over HTTP: the web page at /, the API at /search, /ask, /items, /jobs, ...
    (OpenAPI documentation at /docs). Set MOAIR_API_KEY to require that key on every route but
    /health. Images uploaded through the API are indexed in the background while searches go on.
    Requests that would change or use the server from another site's web page are refused, key
    or not (allow a site with --cors-origin); connections idle for 10 s are closed."""
    import uvicorn

    from api.guards import GuardedH11
    from api.server import create_app

    app = create_app(
        index_path, uploads=uploads, cors_origins=tuple(cors_origin), device=device, dtype=dtype, max_time_budget=max_time_budget,
        allowed_hosts=(*allowed_host, *([host] if host not in ("0.0.0.0", "::") else [])),
    )
    out.print(f"moair: serving {index_path} at http://{host}:{port}/ (API docs at /docs; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", http=GuardedH11, timeout_keep_alive=5, limit_concurrency=MAX_CONNECTIONS)


eval_app = typer.Typer(help="Measure retrieval quality on a benchmark.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("mbeir")
def eval_mbeir(
    root: Path = typer.Option(..., "--root", help="The M-BEIR folder (query/, cand_pool/, qrels/, instructions/, mbeir_images/)."),
    work: Path = typer.Option(..., "--work", help="Where pool indexes, rankings and results are kept; a rerun resumes from it."),
    split: str = typer.Option("test", "--split", help="Query split: test, val or train."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated tasks, e.g. mscoco_task0,cirr_task7 (default: UniIR's 16)."),
    pool: str = typer.Option("local", "--pool", help="local: each task's own pool (M-BEIR_local); global: the union pool."),
    ks: Optional[str] = typer.Option(None, "--k", help="Comma-separated k for Recall@k (default: 1,5,10; 10,20,50 for the fashion sets)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results JSON here."),
    run_file: Optional[Path] = typer.Option(None, "--run-file", help="Also write the TREC run file here."),
    no_instruct: bool = typer.Option(False, "--no-instruct", help="Embed queries without UniIR's task instructions."),
    rerank: int = typer.Option(0, "--rerank", min=0, max=100, help="Re-score the top N hits of each text query with the generator (see search --rerank)."),
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
    with _progress_bars(True) as new_bar:
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
            err.print(f"[yellow]skipped candidate[/yellow] {escape(key)} ({escape(pool_file)}): {escape(reason)}", soft_wrap=True)
    out.print(result.to_markdown(), highlight=False, markup=False)


def main() -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        app()
    except MoairError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)


if __name__ == "__main__":
    main()
