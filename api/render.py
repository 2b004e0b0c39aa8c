"""What the command line shows: one-line reports, tables and progress bars, on the terminal (rich)
with file names escaped. ``--json`` output is the records' own JSON (``api/cli.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from indexer.pipeline import ProgressCallback
from indexer.records import IndexReport, SearchHit, shown_path

out = Console()
err = Console(stderr=True)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape(text: str) -> str:
    """Text for the terminal: rich markup escaped, and control characters (an ANSI escape in a
    file name would recolour or rewrite the terminal) and the bytes of a name that are not UTF-8
    shown as \\xNN."""
    return escape_markup(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", shown_path(text)))


@contextmanager
def progress_bars(enabled: bool) -> Iterator[Callable[[str], ProgressCallback | None]]:
    """Progress bars with ETA on stderr when it is a terminal: ``new_bar(label)`` gives the
    callback(done, total) of a new bar; without a terminal (or when disabled), None."""
    if not enabled or not err.is_terminal:
        yield lambda label: None
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=False) as bars:

        def new_bar(label: str) -> ProgressCallback:
            task = bars.add_task(label, total=None)
            return lambda done, total: bars.update(task, completed=done, total=total)

        yield new_bar


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[ProgressCallback | None]:
    """One progress bar (see ``progress_bars``)."""
    with progress_bars(enabled) as new_bar:
        yield new_bar(label)


def print_report(report: IndexReport) -> None:
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/yellow] {escape(path)}: {escape(reason)}", highlight=False, soft_wrap=True)
    for path, reason in report.failed:
        err.print(
            f"[yellow]failed[/yellow] {escape(path)}: {escape(reason)} (tried again next run)",
            highlight=False,
            soft_wrap=True,
        )
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
    line += f"; {report.items_in_index} items in the index; {report.seconds:.1f} s"
    if report.added or report.updated:
        line += f" ({report.images_per_second:.1f} images/s)"
    out.print(line, highlight=False, markup=False)
    if report.maintenance:
        out.print(report.maintenance, highlight=False, markup=False)
    if report.interrupted:
        err.print(
            "[yellow]interrupted[/yellow]: everything analysed so far is saved; run the same command again to resume"
        )


def print_hits(hits: list[SearchHit], reranked_by: str | None = None) -> None:
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
        out.print(
            f'ordered by P("Yes") from {reranked_by} ({judged} judged); score is the retrieval score', highlight=False
        )


def print_stats(info) -> None:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(info.items_by_modality.items())) or "none"
    search_kind = "exact" if info.exact else f"approximate, {info.search_knob}" if info.search_knob else "approximate"
    if info.reranked > 1:
        search_kind += f", the best {info.reranked}k candidates re-ranked with exact vectors from disk"
    if info.exact:
        recall = "1.000 (exact search)"
    else:
        recall = f"{info.recall_estimate:.3f} of exact search at {info.tuned_items} items (target {info.recall_target})"
    memory = size(info.index_bytes)
    if info.flat_bytes:
        memory += f" ({info.index_bytes / info.flat_bytes:.0%} of exact Flat's {size(info.flat_bytes)})"
    if info.memory_mapped_shards:
        memory += f"; {info.memory_mapped_shards} shard(s) memory-mapped"
    rows = [
        ("items", f"{info.items} ({kinds})"),
        ("paths and keys", str(info.paths)),
        (
            "skipped",
            f"{info.bad_files} bad files (remembered until they change), {info.failed} failed (tried again next run)",
        ),
        (
            "index type",
            f"{info.index_type} ({'chosen automatically' if info.requested_index_type == 'auto' else 'as requested'}),"
            f" {info.dim} dimensions, {search_kind}",
        ),
        ("shards", f"{info.shards}, {info.tombstones} tombstones (deleted or replaced vectors skipped at search)"),
        ("recall@10 estimate", recall),
        ("memory (vector index)", memory),
        ("on disk", f"{size(info.faiss_file_bytes)} FAISS, {size(info.database_bytes)} SQLite"),
        ("models", f"{info.text_embedder}, {info.backbone}; experts {', '.join(info.experts)}"),
        ("projection heads", ", ".join(f"{space} {version}" for space, version in info.heads.items()) or "none"),
    ]
    table = Table(show_header=False)
    for name, value in rows:
        table.add_row(name, escape(value))
    out.print(table)


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def print_verify(report) -> None:
    for line in report.repaired:
        err.print(f"[yellow]repaired[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    if report.repaired and not report.saved:
        err.print("the repair was made in memory; the next moair index, remove or optimize saves it", highlight=False)
    for line in report.problems:
        err.print(f"[red]problem[/red] {escape(line)}", highlight=False, soft_wrap=True)
    out.print(
        "ok: the index is consistent"
        if report.ok
        else f"{len(report.problems)} problem(s): restore the index from a backup, or build it again with moair index",
        highlight=False,
    )


def print_answer_event(event) -> None:
    """One event of a streamed answer: the sources and the citations on stderr, the answer on stdout."""
    from retriever.generative.ask import Sources, Token

    if isinstance(event, Sources):
        for number, hit in enumerate(event.sources, start=1):
            err.print(f"[{number}] {escape(hit.path)} (item {hit.item_id}, score {hit.score:.3f})", highlight=False)
    elif isinstance(event, Token):
        out.print(event.text, end="", highlight=False, markup=False, soft_wrap=True)
    elif not event.found:
        out.print(event.answer, highlight=False)
    else:
        out.print()
        cites = ", ".join(f"[{c.number}] item {c.item_id} {c.path}" for c in event.citations)
        err.print(
            f"cites {escape(cites)}"
            + (" (stopped by the time budget or length limit)" if event.truncated else "")
            + f"; {event.generator}, {event.seconds:.1f} s",
            highlight=False,
            soft_wrap=True,
        )


def print_record(record) -> None:
    """What the experts saw in one item and how it was verbalized."""
    p = record.perception
    out.print(
        f"[bold]item {record.item_id}[/bold]  {p.width}x{p.height}  {escape(', '.join(record.paths))}", highlight=False
    )
    out.print(
        "objects: " + (", ".join(f"{d.label} {d.score:.2f} {list(d.box)}" for d in p.detections) or "none"),
        highlight=False,
        markup=False,
    )
    out.print(
        "tags: " + (", ".join(f"{t.label} {t.score:.2f}" for t in p.tags) or "none"), highlight=False, markup=False
    )
    out.print(
        "text: "
        + (" | ".join(f"{t.text} ({t.score:.2f})" for t in p.text) or ("unreadable" if p.text_present else "none")),
        highlight=False,
        markup=False,
    )
    out.print(
        "colours: " + (", ".join(f"{c.name} {c.fraction:.0%}" for c in p.colors) or "none"),
        highlight=False,
        markup=False,
    )
    out.print(
        "relations: " + (", ".join(f"{r.subject} {r.predicate} {r.object}" for r in p.relations) or "none"),
        highlight=False,
        markup=False,
    )
    out.print(f"\n[bold]MoAI verbalization[/bold]\n{escape(record.verbalization.moai.strip())}", highlight=False)
    out.print(f"\n[bold]retrieval phrasing[/bold]\n{escape(record.verbalization.retrieval)}", highlight=False)
    if record.verbalization.retrieval_ko:
        out.print(escape(record.verbalization.retrieval_ko), highlight=False)


def print_checks(checks) -> None:
    """The model checks of ``moair doctor``: a table, then what failed with its fix."""
    table = Table()
    for column in ("model", "status", "packages"):
        table.add_column(column, overflow="fold")
    for c in checks:
        status = {
            True: f"[green]ok[/green] {c.seconds:.2f} s",
            False: "[red]FAILED[/red]",
            None: "[dim]not checked[/dim]",
        }[c.ok]
        packages = ", ".join(f"{name} {version or '(not installed)'}" for name, version in c.packages.items())
        table.add_row(f"{c.kind} {c.name}", status, escape(packages))
    out.print(table)
    for c in checks:
        if c.ok is False:
            err.print(
                f"[red]{c.kind} {c.name}[/red]: {escape(c.detail)}\n  fix: {escape(c.fix)}",
                highlight=False,
                soft_wrap=True,
            )
        elif c.ok is None:
            out.print(f"[dim]{c.kind} {c.name}: {escape(c.detail)}[/dim]", highlight=False, soft_wrap=True)


def print_head_reports(reports, heads: dict[str, str]) -> None:
    for name, report in reports.items():
        line = (
            f"{name} head ({heads[name]}): {report.train_triples} training / "
            f"{report.heldout_triples} held-out triples, best step {report.best_step}"
        )
        if report.heldout_loss_before is not None:
            line += f"; held-out loss {report.heldout_loss_before:.3f} -> {report.heldout_loss_after:.3f}"
        if report.heldout_accuracy_before is not None:
            line += (
                f", accuracy (positive above hard negative) {report.heldout_accuracy_before:.3f}"
                f" -> {report.heldout_accuracy_after:.3f}"
            )
        out.print(line + f"; {report.seconds:.1f} s", highlight=False, markup=False)
