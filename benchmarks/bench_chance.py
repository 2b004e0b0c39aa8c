"""The chance levels of the packaged encoders, measured again against the table the mixture uses
(``indexer/encoders/calibration.py``).

Run: .venv/bin/python benchmarks/bench_chance.py  (writes benchmarks/results/chance.{json,md})

On the 20 sample photos: a text embedder's level is the median cosine between a query of
``benchmarks/queries.py`` (English only) and the captions of the photos that do not answer it;
the backbone's is the median cosine between two different photos.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from queries import QUERIES  # noqa: E402

from indexer.analyzer import Analyzer  # noqa: E402
from indexer.encoders import TEXT_EMBEDDERS  # noqa: E402
from indexer.encoders.calibration import CHANCE_LEVELS  # noqa: E402
from indexer.images import load_image  # noqa: E402
from indexer.samples import sample_photos  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PACKAGED_BACKBONES = ["efficientnet-lite3"]


def unrelated_median(similarities: np.ndarray, related: np.ndarray) -> float:
    return float(np.median(similarities[~related]))


def main() -> None:
    folder, _ = sample_photos()
    photos = sorted(p for p in folder.iterdir() if p.is_file())
    stems = [p.stem for p in photos]
    english = [(query, target) for language, query, target in QUERIES if language == "en"]
    rows = []
    for name in TEXT_EMBEDDERS.names():
        analyzer = Analyzer(text_embedder=name)
        described = [analyzer.describe(analyzer.analyze(load_image(p)))[1] for p in photos]
        captions = np.stack([parts["caption"] for parts in described])
        queries = analyzer.text_embedder.embed_queries([query for query, _ in english])
        related = np.array([[stem == target for stem in stems] for _, target in english])
        rows.append(("text embedder", name, unrelated_median(queries @ captions.T, related), len(english)))
        if name == TEXT_EMBEDDERS.names()[0]:
            for backbone in PACKAGED_BACKBONES:
                visual = np.stack([parts["visual"] for parts in described])
                same = np.eye(len(photos), dtype=bool)
                rows.append(("backbone", backbone, unrelated_median(visual @ visual.T, same), len(photos)))
    results = [
        {
            "kind": kind,
            "name": name,
            "measured": round(value, 3),
            "table": CHANCE_LEVELS[name].similarity,
            "provenance": CHANCE_LEVELS[name].provenance,
            "queries_or_photos": n,
        }
        for kind, name, value, n in rows
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chance.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Chance levels on the {len(photos)} sample photos ({len(english)} English queries), against the table.",
        "",
        "| kind | encoder | measured median | table | table's provenance |",
        "|---|---|---|---|---|",
        *(
            f"| {r['kind']} | {r['name']} | {r['measured']:.3f} | {r['table']:.2f} | {r['provenance']} |"
            for r in results
        ),
    ]
    (RESULTS / "chance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
