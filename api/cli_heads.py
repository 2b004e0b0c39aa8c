"""``moair train-head``: fit the index's projection heads on text triples, or remove them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from api.options import DeviceOption, DtypeOption, IndexOption, JsonOption, QuietOption
from api.render import err, escape, out, print_head_reports, progress_bars
from indexer.errors import MoairError
from indexer.pipeline import ProgressCallback


def train_head_command(
    triples: Path | None = typer.Argument(
        None,
        help='A jsonl file of text triples, one per line: {"query": ..., "positive": ..., "negative": ...} '
        "(negative optional; SimCSE's sent0/sent1/hard_neg also read). Lines that are not usable are skipped and "
        "reported.",
    ),
    index_path: Path = IndexOption,
    space: list[str] = typer.Option(
        [],
        "--space",
        help="Train only this embedding space (repeatable): language (the text embedder: captions, OCR "
        "text, text queries) or visual (a cross-modal backbone's shared space). Default: every space the index has.",
    ),
    steps: int = typer.Option(300, "--steps", min=1, help="Optimiser steps (the best held-out step is kept)."),
    batch_size: int = typer.Option(
        32, "--batch-size", min=2, help="Triples per step; the other triples of a batch are the negatives."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split and the batches."),
    remove_heads: bool = typer.Option(
        False, "--remove", help="Search without projection heads again (of --space, or all)."
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    as_json: bool = JsonOption,
    quiet: bool = QuietOption,
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
                out.print(
                    f"projection heads now: {', '.join(f'{k} {v}' for k, v in info.heads.items()) or 'none'}",
                    highlight=False,
                )
            return
        from indexer.head_training import read_triples

        data = read_triples(triples)
        if data.problems and not as_json:
            err.print(f"[yellow]{escape(data.problem_summary())}[/yellow]", highlight=False, soft_wrap=True)
        with progress_bars(not quiet and not as_json) as new_bar:
            bars: dict[str, ProgressCallback | None] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = new_bar(stage)
                if bars[stage]:
                    bars[stage](done, total)

            reports = engine.train_head(
                data, spaces=space or None, progress=progress, steps=steps, batch_size=batch_size, seed=seed
            )
        info = engine.stats()
    if as_json:
        print(
            json.dumps(
                {
                    "triples": len(data),
                    "skipped_lines": data.skipped,
                    "problems": data.problems,
                    "heads": info.heads,
                    "reports": {name: report.model_dump() for name, report in reports.items()},
                }
            )
        )
        return
    print_head_reports(reports, info.heads)
