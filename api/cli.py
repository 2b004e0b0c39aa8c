"""The ``moair`` command line: index, search, ask, stats, verify, remove, optimize, inspect, demo,
doctor, serve; ``train-head`` is in ``api/cli_heads.py``, ``eval`` in ``api/cli_eval.py``, the
options several commands share in ``api/options.py``. Each command parses its options and calls
the Python API (``retriever.Engine``); what it shows is in ``api/render.py``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from api.cli_eval import eval_app
from api.cli_heads import train_head_command
from api.options import (
    DeviceOption,
    DtypeOption,
    IndexOption,
    IndexTypeOption,
    JsonOption,
    MemoryBudgetOption,
    QuietOption,
    RecallTargetOption,
    configure,
)
from api.render import (
    err,
    escape,
    out,
    print_answer_event,
    print_checks,
    print_hits,
    print_record,
    print_report,
    print_stats,
    print_verify,
    progress_bar,
)
from indexer.errors import MoairError
from indexer.experts import DEFAULT_EXPERTS
from indexer.samples import DEFAULT_CACHE
from retriever.query import MAX_ASK_K, MAX_K, MAX_RERANK

app = typer.Typer(
    help="moair: index a photo collection and search it by text (English or Korean), by image, or both.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: "moair[checkpoints]" is a pip extra, not rich markup
)
MAX_CONNECTIONS = 512  # open connections and requests in flight the server takes; more get 503


@app.command()
def index(
    paths: list[Path] = typer.Argument(..., help="Image files and folders (folders are walked recursively)."),
    index_path: Path = IndexOption,
    text_embedder: str | None = typer.Option(
        None,
        help="Text embedder for a new index: e5-small (multilingual; the default), minilm (English), or one "
        "from another package as package.module:Class.",
    ),
    backbone: str | None = typer.Option(
        None,
        help="Visual expert for a new index: efficientnet-lite3 (packaged, CPU; the default), "
        "clip (a local CLIP or SigLIP checkpoint), "
        "openclip (a local open_clip model: its folder, or one weights file with --model-name), "
        "e5v (a local E5-V / LLaVA-NeXT checkpoint) or moai (a local MoAI-7B checkpoint, fed with the experts' "
        "verbalization), or one from another package as package.module:Class; "
        "with a checkpoint backbone, text queries reach the image space too.",
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="The checkpoint folder for --backbone clip, e5v or moai (config.json, *.safetensors, tokenizer and "
        "preprocessor files); for openclip, an open_clip folder (open_clip_config.json + weights) or one weights file "
        "(.safetensors, .pt, .bin) with --model-name.",
    ),
    model_name: str | None = typer.Option(
        None,
        "--model-name",
        help="For --backbone openclip with a single weights file: its open_clip architecture "
        "(e.g. ViT-B-32, ViT-B-16-SigLIP; see open_clip.list_models()).",
    ),
    expert: list[str] = typer.Option(
        [],
        "--expert",
        help="Another perception expert for a new index (repeat for more): from a local checkpoint folder as "
        "NAME=DIR, owlv2 (open-world detection, MoAI's 1,847 names) or panoptic (Mask2Former COCO panoptic); "
        "or one from another package as package.module:Class.",
    ),
    without_expert: list[str] = typer.Option(
        [],
        "--without-expert",
        help=f"Leave a default perception expert out of a new index (repeat for more): "
        f"{', '.join(DEFAULT_EXPERTS)}. E.g. --without-expert hangul where Tesseract's Korean model is not installed.",
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    prune: bool = typer.Option(True, help="Drop files that were deleted from the given folders."),
    index_type: str | None = IndexTypeOption,
    memory_budget: str | None = MemoryBudgetOption,
    recall_target: float | None = RecallTargetOption,
    as_json: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Build or update an index. Only new and changed files are analysed; content that is already
    indexed under another path is linked, not embedded again; bad files are skipped with a reason.
    The vector index follows the collection: exact while small, rebuilt as IVF when it grows."""
    from retriever import Engine

    expert_checkpoints, other_experts = {}, []
    for given in expert:
        name, _, folder = given.partition("=")
        if folder:
            expert_checkpoints[name.strip()] = Path(folder).expanduser()
        elif ":" in given:
            other_experts.append(given.strip())
        else:
            raise MoairError(
                "--expert takes NAME=DIR (e.g. owlv2=~/models/owlv2-base-patch16-ensemble) or "
                f"package.module:Class, not {given!r}"
            )
    unknown = sorted(set(without_expert) - set(DEFAULT_EXPERTS))
    if unknown:
        raise MoairError(f"--without-expert takes one of {', '.join(DEFAULT_EXPERTS)}, not {', '.join(unknown)}")
    experts = [name for name in DEFAULT_EXPERTS if name not in without_expert] + other_experts
    with Engine.open(
        index_path,
        create=True,
        text_embedder=text_embedder,
        backbone=backbone,
        checkpoint=checkpoint,
        experts=experts if without_expert or other_experts else None,
        expert_checkpoints=expert_checkpoints,
        device=device,
        dtype=dtype,
        model_name=model_name,
    ) as engine:
        configure(engine, index_type, memory_budget, recall_target)
        with progress_bar(not quiet and not as_json, "indexing") as progress:
            report = engine.add(paths, progress=progress, prune=prune)
    if as_json:
        print(report.model_dump_json())
    else:
        print_report(report)
    if report.interrupted:
        raise typer.Exit(130)


@app.command()
def search(
    query: str | None = typer.Argument(
        None, help="Text query, English or Korean. Quote words to match text in images."
    ),
    index_path: Path = IndexOption,
    image: Path | None = typer.Option(
        None, "--image", help="Query image (alone, or with the text for image + text search)."
    ),
    k: int = typer.Option(10, "-k", "--k", min=1, max=MAX_K, help="Number of results."),
    min_score: float | None = typer.Option(None, "--min-score", help="Drop hits scoring below this."),
    max_drop: float | None = typer.Option(
        None, "--max-drop", help="End the list where the score falls by more than this from one hit to the next."
    ),
    modality: str | None = typer.Option(None, "--modality", help="Only items that are image, text or image,text."),
    rerank: int = typer.Option(
        0,
        "--rerank",
        min=0,
        max=MAX_RERANK,
        help='Re-score the top N hits of a text query with a generative model as P("Yes") '
        'for "Does this image match: QUERY?" (MoAI when it is the index\'s backbone, '
        "else Gemma-3 270M over each item's description) and order them by it. "
        "Off by default: see the README for what it measured.",
    ),
    time_budget: float | None = typer.Option(
        None,
        "--time-budget",
        min=0.001,
        help="Seconds the search (with --rerank) may take; hits not re-scored by then keep their order.",
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
            query,
            image=image,
            k=k,
            modality=modality,
            min_score=min_score,
            max_drop=max_drop,
            rerank=rerank,
            time_budget=time_budget,
        )
        reranked_by = engine.reranked_by(hits)
    if as_json:
        print(json.dumps([h.model_dump(mode="json") for h in hits], ensure_ascii=False))
    else:
        print_hits(hits, reranked_by)


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
    print_stats(info)


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
        print_verify(report)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def remove(
    paths: list[str] = typer.Argument(..., help="Indexed file paths (or entry keys) to take out of the index."),
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
    index_type: str | None = IndexTypeOption,
    memory_budget: str | None = MemoryBudgetOption,
    recall_target: float | None = RecallTargetOption,
    as_json: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Rebuild the vector index from the stored vectors: deleted and replaced vectors dropped, the
    index type chosen again (or as given), trained on a fresh sample, nprobe/efSearch tuned to the
    recall target. Images are not analysed again. Safe to interrupt: the old index stays until
    the new one is saved."""
    from retriever import Engine

    with Engine.open(index_path) as engine:
        configure(engine, index_type, memory_budget, recall_target)
        with progress_bar(not quiet and not as_json, "rebuilding vector index") as progress:
            summary = engine.optimize(progress=progress)
        info = engine.stats()
    if as_json:
        print(json.dumps({"summary": summary, "stats": info.model_dump()}))
        return
    out.print(summary, highlight=False, markup=False)
    print_stats(info)


@app.command()
def ask(
    question: str = typer.Argument(..., help='A question about the collection, e.g. "what is written on the sign?".'),
    index_path: Path = IndexOption,
    k: int = typer.Option(5, "-k", "--k", min=1, max=MAX_ASK_K, help="Items retrieved to answer from."),
    min_score: float = typer.Option(
        0.0,
        "--min-score",
        help="Retrieval score an item needs to be used as a source (0: above chance level); "
        'with none, the answer is "not found in the collection".',
    ),
    time_budget: float = typer.Option(
        60.0, "--time-budget", min=0.001, help="Seconds for the whole answer; it stops where the budget ends."
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    as_json: bool = JsonOption,
) -> None:
    """Answer a question from the collection: retrieve, then let a generative model (MoAI when it is
    the index's backbone, else Gemma-3 270M over the items' descriptions) answer from the items
    that match, citing them as [n]. The answer is printed as it is generated."""
    from retriever import Engine
    from retriever.generative.ask import Answer

    with Engine.open(index_path, device=device, dtype=dtype) as engine:
        for event in engine.ask_stream(question, k=k, time_budget=time_budget, min_score=min_score):
            if not as_json:
                print_answer_event(event)
            elif isinstance(event, Answer):
                print(event.model_dump_json())


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
    print_record(record)


@app.command()
def demo(
    cache: Path = typer.Option(DEFAULT_CACHE, help="Where the sample photos and demo index go."),
    k: int = typer.Option(3, "-k", help="Results per query."),
    as_json: bool = JsonOption,
) -> None:
    """Index the bundled sample photos (from scikit-image, scikit-learn, matplotlib and Debian's
    darknet package) and run example searches in English, Korean and by image. It checks what a
    working install gives: every sample photo indexed, each search finding its photo first; if
    not, it says what differs and exits with 1."""
    from api.demo import run_demo

    if not run_demo(cache, k, as_json):
        raise typer.Exit(1)


@app.command()
def doctor(
    index_path: Path | None = typer.Option(
        None,
        "--index",
        "-i",
        envvar="MOAIR_INDEX",
        help="Check the models of this index (checkpoint backbones and experts included).",
    ),
    generator: bool = typer.Option(
        False, "--generator", help="Also load the generative model (rerank, ask); Gemma's first load takes 1-2 minutes."
    ),
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
        print_checks(checks)
    if any(c.ok is False for c in checks):
        raise typer.Exit(1)


@app.command()
def serve(
    index_path: Path = IndexOption,
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 127.0.0.1 keeps it to this machine."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    uploads: Path | None = typer.Option(
        None, help="Folder for images added through the API (default: the uploads folder inside the index)."
    ),
    cors_origin: list[str] = typer.Option(
        [],
        "--cors-origin",
        help="A web origin (e.g. https://photos.example.org) whose pages may call the API; "
        "repeat for more. Off by default.",
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    max_time_budget: float = typer.Option(
        120.0,
        "--max-time-budget",
        min=0.001,
        help="Seconds of generative work (rerank, /ask answers) one request may take at most.",
    ),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="A host name clients use to reach this server (e.g. photos.example.org); repeat for more. "
        "IP addresses and localhost are always answered; other names are refused (DNS rebinding).",
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
        index_path,
        uploads=uploads,
        cors_origins=tuple(cors_origin),
        device=device,
        dtype=dtype,
        max_time_budget=max_time_budget,
        allowed_hosts=(*allowed_host, *([host] if host not in ("0.0.0.0", "::") else [])),
    )
    out.print(f"moair: serving {index_path} at http://{host}:{port}/ (API docs at /docs; Ctrl-C stops)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=GuardedH11,
        timeout_keep_alive=5,
        limit_concurrency=MAX_CONNECTIONS,
    )


app.command("train-head")(train_head_command)
app.add_typer(eval_app, name="eval")


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
