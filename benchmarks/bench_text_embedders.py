"""Which text embedder should be the default? Recall@1/3 of each on the sample photos.

Run: .venv/bin/python benchmarks/bench_text_embedders.py  (writes benchmarks/results/text_embedders.{json,md})
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from queries import QUERIES  # noqa: E402

from indexer.encoders import TEXT_EMBEDDERS  # noqa: E402
from indexer.samples import sample_photos  # noqa: E402
from retriever import Engine  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    folder, _ = sample_photos()
    rows = []
    for name in TEXT_EMBEDDERS.names():
        with (
            tempfile.TemporaryDirectory() as tmp,
            Engine.open(Path(tmp) / "i.moair", create=True, text_embedder=name) as engine,
        ):
            engine.add([folder])
            for language in ("en", "ko"):
                ranks, started = [], time.perf_counter()
                subset = [q for q in QUERIES if q[0] == language]
                for _, query, target in subset:
                    stems = [Path(h.path).stem for h in engine.search(query, k=len(engine))]
                    ranks.append(stems.index(target) + 1)
                rows.append(
                    {
                        "embedder": name,
                        "language": language,
                        "queries": len(subset),
                        "recall@1": round(sum(r <= 1 for r in ranks) / len(ranks), 3),
                        "recall@3": round(sum(r <= 3 for r in ranks) / len(ranks), 3),
                        "mean_rank": round(sum(ranks) / len(ranks), 2),
                        "ms_per_query": round((time.perf_counter() - started) / len(subset) * 1000, 1),
                    }
                )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text_embedders.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| embedder | language | queries | Recall@1 | Recall@3 | mean rank | ms/query |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['embedder']} | {r['language']} | {r['queries']} | {r['recall@1']} | {r['recall@3']} | "
        f"{r['mean_rank']} | {r['ms_per_query']} |"
        for r in rows
    ]
    (RESULTS / "text_embedders.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
