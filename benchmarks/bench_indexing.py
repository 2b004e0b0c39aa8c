"""Indexing throughput (images/s, per-stage ms) and text-query latency at 10k items, on 2 cores.

Run: .venv/bin/python benchmarks/bench_indexing.py [--images 60] [--items 10000] [--width 1600]
Writes benchmarks/results/indexing.{json,md} (``--out`` names another file). Figures are for this machine and this
run; compare ratios, not absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from indexer.experts.base import Analysis
from indexer.images import load_image
from indexer.packaged_models import INDEX_WORKERS, rapid_ocr
from indexer.samples import sample_photos
from indexer.store import Batch, FileEntry, NewItem
from retriever import Engine

RESULTS = Path(__file__).parent / "results"
TEXT_QUERIES = [
    "a dog",
    "two horses",
    "a cat on a sofa",
    "people flying kites",
    "고양이",
    "a red car",
    "the sign says OPEN",
    "a cup of coffee",
]


def camera_like_collection(folder: Path, count: int, start: int = 0, width: int = 1600) -> list[Path]:
    """``count`` distinct JPEGs ``width`` px wide (4:3-ish) from the sample photos (crops, flips,
    scales); calls with ``start`` past an earlier call's range make different ones."""
    sources, _ = sample_photos()
    photos = [
        Image.open(p).convert("RGB")
        for p in sorted(sources.iterdir())
        if p.stem not in ("skimage-page", "skimage-text")
    ]
    out = []
    for i in range(start, start + count):
        image = photos[i % len(photos)]
        w, h = image.size
        shift = (i // len(photos)) * 0.04
        crop = image.crop((int(w * shift), int(h * shift / 2), w, h))
        if (i // len(photos)) % 2:
            crop = ImageOps.mirror(crop)
        crop = crop.resize((width, int(width * crop.height / crop.width)), Image.Resampling.BICUBIC)
        path = folder / f"photo-{i:04d}.jpg"
        crop.save(path, quality=90)
        out.append(path)
    return out


def stage_breakdown(engine: Engine, files: list[Path]) -> dict[str, float]:
    """Mean ms per image for decoding, each expert and the embedding step, run one after another."""
    times: dict[str, float] = defaultdict(float)
    analyses = []
    for f in files:
        started = time.perf_counter()
        analysis = Analysis.of(load_image(f))
        times["decode"] += time.perf_counter() - started
        for expert in engine.analyzer.experts:
            started = time.perf_counter()
            expert.run(analysis)
            times[expert.name] += time.perf_counter() - started
        analyses.append(analysis)
    started = time.perf_counter()
    for analysis in analyses:
        engine.analyzer.describe(analysis)
    times["embed"] += time.perf_counter() - started
    # Baseline for the OCR stage: PP-OCR's own pipeline (detector at 736 px + recognition), which
    # the first version ran on every image its gate flagged.
    full_ocr = rapid_ocr()
    for analysis in analyses:
        started = time.perf_counter()
        full_ocr(np.ascontiguousarray(analysis.image.rgb[:, :, ::-1]), use_cls=False)
        times["baseline: full PP-OCR"] += time.perf_counter() - started
    return {k: round(v / len(files) * 1000, 1) for k, v in times.items()}


def grow_to(engine: Engine, items: int, seed: int = 0) -> None:
    """Fill the index to ``items`` with synthetic items: real perception records, noisy vectors."""
    rng = np.random.default_rng(seed)
    store = engine.store
    real = store.catalog.items(list(range(1, len(store) + 1)))
    real_vectors = store.item_vectors([r.item_id for r in real])
    layout = store.config.layout
    versions = engine.analyzer.versions()
    batch_new, batch_files = [], []
    for n in range(len(store), items):
        j = n % len(real)
        parts = {}
        for block, where in zip(layout.blocks, layout.slices().values()):
            vector = real_vectors[j, where.start : where.stop - 1]
            if real_vectors[j, where.stop - 1] == 0:
                parts[block.name] = None
                continue
            noisy = vector + rng.normal(0, 0.05, vector.shape).astype(np.float32)
            parts[block.name] = noisy / np.linalg.norm(noisy)
        digest = f"synthetic-{n}"
        batch_new.append(NewItem(digest, real[j].perception, real[j].verbalization, layout.compose(parts), versions))
        batch_files.append(FileEntry(f"/synthetic/{n}.jpg", 0, 0, digest))
        if len(batch_new) == 2000:
            store.commit(Batch(new_items=batch_new, files=batch_files))
            batch_new, batch_files = [], []
    store.commit(Batch(new_items=batch_new, files=batch_files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=1600, help="photo width in px (4032 for 12 MP phone photos)")
    parser.add_argument("--out", default="indexing", help="results file name, without suffix")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, warm_up = Path(tmp, "photos"), Path(tmp, "warm-up")
        folder.mkdir()
        warm_up.mkdir()
        files = camera_like_collection(folder, args.images, width=args.width)
        camera_like_collection(warm_up, 2 * INDEX_WORKERS, start=args.images, width=args.width)
        with Engine.open(Path(tmp, "bench.moair"), create=True) as engine:
            # Load every model before timing: the shared copies (search) and each worker's own.
            engine.search("warm up", k=1)
            engine.analyzer.analyze(load_image(files[0]))
            engine.add([warm_up])
            report = engine.add([folder])
            stages = stage_breakdown(engine, files[:20])
            grow_to(engine, args.items)
            latencies = []
            for _ in range(5):
                for query in TEXT_QUERIES:
                    started = time.perf_counter()
                    engine.search(query, k=10)
                    latencies.append((time.perf_counter() - started) * 1000)
            items = len(engine)
    latencies.sort()
    result = {
        "cpu_count": os.cpu_count(),
        "images": args.images,
        "image_width": args.width,
        "index_workers": INDEX_WORKERS,
        "indexing_images_per_second": round(report.images_per_second, 2),
        "stage_ms_per_image_sequential": stages,
        "query_items": items,
        "text_query_ms_p50": round(statistics.median(latencies), 1),
        "text_query_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    md = [
        f"Indexing {args.images} JPEGs {args.width} px wide on {os.cpu_count()} cores ({INDEX_WORKERS} workers): "
        f"**{result['indexing_images_per_second']} images/s**",
        "",
        "| stage | ms per image (run alone) |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in stages.items()],
        "",
        f"Text query at {items} items: p50 **{result['text_query_ms_p50']} ms**, p95 {result['text_query_ms_p95']} "
        "ms (embed + FAISS + evidence).",
    ]
    (RESULTS / f"{args.out}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
