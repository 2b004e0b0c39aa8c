"""``moair demo``: index the bundled sample photos and run example searches, checking what a
working install gives (every sample photo indexed, each search finding its photo first)."""

from __future__ import annotations

import json
from pathlib import Path

from api.render import err, escape, out, print_hits, print_report, progress_bar
from indexer.errors import MoairError
from indexer.samples import SAMPLE_FILES, sample_photos
from retriever import Engine

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


def run_demo(cache: Path, k: int, as_json: bool) -> bool:
    """Index the samples in ``cache`` and run ``DEMO_SEARCHES`` (``k`` hits each), printing tables
    or, with ``as_json``, one JSON document; whether every check passed."""
    folder, problems = sample_photos(cache)
    for w in problems:
        err.print(f"[yellow]warning[/yellow]: {escape(w)}", highlight=False, soft_wrap=True)
    index_path = Path(cache).expanduser() / "demo.moair"
    results = []
    with Engine.open(index_path, create=True) as engine:
        with progress_bar(not as_json, "indexing samples") as progress:
            report = engine.add([folder], progress=progress, prune=True)
        items = len(engine)
        if not as_json:
            out.print(
                f"[bold]sample photos[/bold] in {escape(str(folder))}; index at {escape(str(index_path))}",
                highlight=False,
            )
            print_report(report)
        if items == 0:
            raise MoairError(
                "the demo indexed none of the sample photos (see the reasons above); `moair doctor` checks the models"
            )
        missing = [name for name in SAMPLE_FILES if engine.store.catalog.item_id_for_path(str(folder / name)) is None]
        if missing:
            problems.append(
                f"{len(missing)} of the {len(SAMPLE_FILES)} sample photos are not indexed: {', '.join(missing)}"
            )
        for kind, query, expected in DEMO_SEARCHES:
            if kind == "image":
                query = str(folder / query)
            hits = engine.search(query, k=k) if kind == "text" else engine.search(image=query, k=k)
            found = Path(hits[0].path).name if hits else None
            if found != expected:
                problems.append(f"the {kind} search {query!r} found {found or 'nothing'} first, not {expected}")
            results.append(
                {
                    "kind": kind,
                    "query": query,
                    "expected": expected,
                    "found": found,
                    "hits": [h.model_dump() for h in hits],
                }
            )
            if not as_json:
                mark = "[green]✓[/green]" if found == expected else "[red]✗[/red]"
                out.print(
                    f"\n{mark} [bold]{kind} query:[/bold] {escape(query)} [dim](expected first: {expected})[/dim]",
                    highlight=False,
                )
                print_hits(hits)
    if as_json:
        print(
            json.dumps(
                {
                    "index": str(index_path),
                    "report": report.model_dump(mode="json"),
                    "searches": results,
                    "problems": problems,
                },
                ensure_ascii=False,
            )
        )
    elif problems:
        for problem in problems:
            err.print(f"[red]demo check failed[/red]: {escape(problem)}", highlight=False, soft_wrap=True)
        err.print(
            "this install does not give what a working one gives; `moair doctor` lists each model and its packages"
        )
    else:
        out.print(
            f"\ndemo check passed: {len(SAMPLE_FILES)} sample photos indexed, {len(DEMO_SEARCHES)} searches found "
            "their photo first"
        )
    return not problems
