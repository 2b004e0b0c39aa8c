"""Retrieval quality on real photos, by query type, with an expert ablation.

Builds an M-BEIR-format set (``build_set``) from the bundled sample photos, plus signs rendered
onto photos (text in the image) and rendered-caption images (E5-V's trick: a sentence drawn as an
image), with queries and judgments written by hand from what the images show. Runs
``moair eval mbeir`` on it with every perception expert, then with each one off in turn, and
reports Recall@1/5/10 per query type.

Run: .venv/bin/python benchmarks/bench_quality.py
Writes benchmarks/results/quality.{json,md,png}.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from indexer.experts import DEFAULT_EXPERTS
from indexer.samples import sample_photos
from retriever.mbeir.data import Qrels
from retriever.mbeir.evaluate import evaluate
from retriever.mbeir.metrics import recall_at_ks

RESULTS = Path(__file__).parent / "results"
KS = [1, 5, 10]

# Signs drawn onto photos: (new image name, base photo, text).
SIGNS = [("sign-open", "skimage-coffee", "OPEN 24H"), ("sign-exit", "sklearn-china", "EXIT"),
         ("sign-pharmacy", "darknet-horses", "PHARMACY"), ("sign-sale", "skimage-astronaut", "SALE 50%")]
# Sentences drawn as images (E5-V: a text rendered as an image is found through OCR).
RENDERED = {"caption-snow": "a dog playing in the snow", "caption-market": "fresh vegetables at the market",
            "caption-train": "a red train crossing a bridge"}

# (type, query text, relevant image names). Judgments come from looking at the photos.
TEXT_QUERIES = [
    ("objects", "a dog", ["darknet-dog", "darknet-person"]),
    ("objects", "a cat", ["skimage-chelsea"]),
    ("objects", "a giraffe", ["darknet-giraffe"]),
    ("objects", "a cup of coffee", ["skimage-coffee", "sign-open"]),
    ("objects", "a bird", ["darknet-eagle"]),
    ("objects", "a kite in the sky", ["darknet-kite"]),
    ("objects", "a man in a military uniform", ["matplotlib-grace_hopper"]),
    ("counts", "two horses", ["darknet-horses", "sign-pharmacy"]),
    ("counts", "two giraffes and a zebra", ["darknet-giraffe"]),
    ("counts", "five people and three kites", ["darknet-kite"]),
    ("colours", "a green picture", ["darknet-giraffe"]),
    ("colours", "a mostly blue image", ["skimage-rocket"]),
    ("colours", "an almost black image", ["skimage-hubble_deep_field"]),
    ("text in image", "a sign that says 'OPEN 24H'", ["sign-open"]),
    ("text in image", "an EXIT sign", ["sign-exit"]),
    ("text in image", "the word PHARMACY", ["sign-pharmacy"]),
    ("text in image", "a sign with 'SALE 50%'", ["sign-sale"]),
    ("text in image", "a page about segmentation", ["skimage-page"]),
    ("relations", "a dog next to a bicycle", ["darknet-dog"]),
    ("relations", "a person riding a horse", ["darknet-person"]),
    ("relations", "a cup on a table", ["skimage-coffee", "sign-open"]),
    ("korean", "개", ["darknet-dog", "darknet-person"]),
    ("korean", "고양이", ["skimage-chelsea"]),
    ("korean", "기린과 얼룩말", ["darknet-giraffe"]),
    ("korean", "말 두 마리", ["darknet-horses", "sign-pharmacy"]),
    ("korean", "연을 날리는 사람들", ["darknet-kite"]),
    ("rendered caption", "a dog playing in the snow", ["caption-snow"]),
    ("rendered caption", "vegetables at a market", ["caption-market"]),
    ("rendered caption", "a red train on a bridge", ["caption-train"]),
]
# image -> image: crops (left, top, right, bottom as fractions) that must find their source.
CROPS = [("darknet-dog", (0.1, 0.2, 0.6, 0.9)), ("darknet-horses", (0.3, 0.1, 0.9, 0.8)),
         ("skimage-chelsea", (0.1, 0.0, 0.7, 0.6)), ("sklearn-flower", (0.2, 0.2, 0.8, 0.8))]
# image + text -> image (composed, CIRR-like): (query image, text, relevant).
COMPOSED = [("darknet-dog", "with a person and a horse", ["darknet-person"]),
            ("darknet-horses", "a person next to the horse", ["darknet-person"])]


def build_set(root: Path) -> dict[str, str]:
    """Write the M-BEIR-format folder under ``root``; returns qid -> query type."""
    samples, _ = sample_photos()
    images = root / "mbeir_images" / "quality"
    images.mkdir(parents=True)
    names = []
    for photo in sorted(samples.iterdir()):
        Image.open(photo).convert("RGB").save(images / f"{photo.stem}.png")
        names.append(photo.stem)
    for name, base, text in SIGNS:
        image = Image.open(images / f"{base}.png").convert("RGB")
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=max(24, image.width // 12))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x, y = image.width // 10, image.height // 10
        draw.rectangle([x - 10, y - 10, x + right - left + 10, y + bottom - top + 20], fill="white")
        draw.text((x - left, y - top), text, fill="black", font=font)
        image.save(images / f"{name}.png")
        names.append(name)
    for name, sentence in RENDERED.items():
        image = Image.new("RGB", (640, 160), "white")
        ImageDraw.Draw(image).text((20, 50), sentence, fill="black", font=ImageFont.load_default(size=36))
        image.save(images / f"{name}.png")
        names.append(name)
    for n, (base, (x0, y0, x1, y1)) in enumerate(CROPS):
        image = Image.open(images / f"{base}.png")
        w, h = image.size
        image.crop((int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h))).save(images / f"crop-{n}.png")

    def did(prefix: int, name: str) -> str:
        return f"{prefix}:{names.index(name)}"

    def pool(prefix: int) -> list[dict]:
        return [{"did": did(prefix, n), "txt": None, "img_path": f"mbeir_images/quality/{n}.png", "modality": "image",
                 "src_content": None} for n in names]

    types, tasks = {}, {}
    t2i = []
    for n, (kind, text, relevant) in enumerate(TEXT_QUERIES):
        t2i.append(_query(f"9:{n}", text, None, "text", [did(9, r) for r in relevant]))
        types[f"9:{n}"] = kind
    tasks["mscoco_task0"] = (pool(9), t2i, 0)
    i2i = []
    for n, (base, _) in enumerate(CROPS):
        i2i.append(_query(f"4:{n}", None, f"mbeir_images/quality/crop-{n}.png", "image", [did(4, base)]))
        types[f"4:{n}"] = "image to image"
    tasks["nights_task4"] = (pool(4), i2i, 4)
    composed = []
    for n, (base, text, relevant) in enumerate(COMPOSED):
        composed.append(_query(f"8:{n}", text, f"mbeir_images/quality/{base}.png", "image,text", [did(8, r) for r in relevant]))
        types[f"8:{n}"] = "image + text"
    tasks["cirr_task7"] = (pool(8), composed, 7)

    for name, (candidates, queries, task_id) in tasks.items():
        pool_name = f"mbeir_{name}_test_cand_pool.jsonl" if name.startswith("mscoco") else f"mbeir_{name}_cand_pool.jsonl"
        _write_jsonl(root / "cand_pool" / "local" / pool_name, candidates)
        _write_jsonl(root / "query" / "test" / f"mbeir_{name}_test.jsonl", queries)
        qrels = "".join(f"{q['qid']} 0 {d} 1 {task_id}\n" for q in queries for d in q["pos_cand_list"])
        (root / "qrels" / "test").mkdir(parents=True, exist_ok=True)
        (root / "qrels" / "test" / f"mbeir_{name}_test_qrels.txt").write_text(qrels)
    return types


def _query(qid: str, text: str | None, image: str | None, modality: str, positives: list[str]) -> dict:
    return {"qid": qid, "query_txt": text, "query_img_path": image, "query_modality": modality,
            "query_src_content": None, "pos_cand_list": positives, "neg_cand_list": []}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def recall_by_type(result, types: dict[str, str], root: Path) -> dict[str, dict[str, float]]:
    """Recall@k per query type, from the rankings of every task."""
    relevant = {}
    for qrels_file in (root / "qrels" / "test").iterdir():
        for line in qrels_file.read_text().splitlines():
            qid, _, doc, _, _ = line.split()
            relevant.setdefault(qid, []).append(doc)
    by_type: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for _, ranked in result.runs.values():
        for qid, hits in ranked.items():
            by_type[types[qid]][qid] = [doc for doc, _ in hits]
    by_type["all"] = {qid: ranked for group in list(by_type.values()) for qid, ranked in group.items()}
    return {kind: recall_at_ks(ranked, Qrels(relevant=relevant), KS) for kind, ranked in by_type.items()}


def main() -> None:
    configs = {"all experts": list(DEFAULT_EXPERTS)}
    configs.update({f"without {e}": [x for x in DEFAULT_EXPERTS if x != e] for e in DEFAULT_EXPERTS})
    table: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "M-BEIR"
        types = build_set(root)
        for name, experts in configs.items():
            result = evaluate(root, Path(tmp) / name.replace(" ", "-"), tasks=["mscoco_task0", "nights_task4", "cirr_task7"],
                              ks=KS, instruct=False, experts=experts)
            table[name] = recall_by_type(result, types, root)
            print(name, table[name]["all"])
    counts = defaultdict(int)
    for kind in types.values():
        counts[kind] += 1
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps({"queries_per_type": counts, "recall": table}, indent=2, ensure_ascii=False))
    kinds = [*dict.fromkeys(types.values()), "all"]
    lines = ["Recall@1 / @5 / @10 by query type (x100); each column after the first turns one expert off.", "",
             "| query type | queries | " + " | ".join(table) + " |", "|---|---|" + "---|" * len(table)]
    for kind in kinds:
        cells = [f"{t[kind]['Recall@1']:.0f} / {t[kind]['Recall@5']:.0f} / {t[kind]['Recall@10']:.0f}" for t in table.values()]
        lines.append(f"| {kind} | {counts[kind] if kind != 'all' else len(types)} | " + " | ".join(cells) + " |")
    (RESULTS / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _chart(table, kinds, RESULTS / "quality.png")


def _chart(table: dict[str, dict[str, dict[str, float]]], kinds: list[str], path: Path) -> None:
    """Recall@1 per query type, one bar per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(table)
    for i, (name, by_type) in enumerate(table.items()):
        ax.bar([k + i * width for k in range(len(kinds))], [by_type[kind]["Recall@1"] for kind in kinds], width, label=name)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(kinds))], kinds, rotation=20, ha="right")
    ax.set_ylabel("Recall@1 (x100)")
    ax.set_ylim(0, 125)  # room for the legend above the bars
    ax.set_title("moair on real sample photos: Recall@1 by query type, expert ablation")
    ax.legend(fontsize=8, ncol=len(table), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
