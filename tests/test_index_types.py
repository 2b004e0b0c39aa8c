"""Index at scale: the index type chosen from size and memory budget, trained and tuned to a recall
target; add, update and delete without a rebuild (tombstones); shards searched as one; optimize;
memory-mapped loading; stats; the CLI for all of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer import ann, shards
from indexer.errors import MoairError
from indexer.records import Entry
from retriever import Engine
from retriever.search import top_k

MOAIR = str(Path(sys.executable).parent / "moair")
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
THINGS = ["bicycle", "car", "dog", "cat", "umbrella", "kite", "boat", "horse", "chair", "train"]
PLACES = ["in a park", "on a beach", "in the snow", "at night", "next to a house"]


def sentences(n: int) -> list[str]:
    """``n`` distinct short descriptions (colour, thing, place)."""
    out = [f"a {c} {t} {p}" for p in PLACES for t in THINGS for c in COLOURS]
    assert n <= len(out)
    return out[:n]


def entries(n: int) -> list[Entry]:
    return [Entry(key=f"t{i}", text=text) for i, text in enumerate(sentences(n))]


def finds_itself(engine: Engine, key: str, text: str) -> bool:
    return engine.search(text, k=1, modality="text")[0].path == key


def shard_files(index: Path) -> set[str]:
    return {p.name for p in (index / shards.FOLDER).glob("shard-*.faiss")}


# -- choosing the index type ---------------------------------------------------------------------


def test_auto_choice_is_exact_while_small_then_ivf_with_codes_that_fit_the_budget():
    assert ann.choose_index_type(500, 2051) == "Flat"
    assert ann.choose_index_type(20_000, 2051) == "Flat"  # a query scans 164 MB: still exact
    assert ann.choose_index_type(1_000_000, 384, memory_budget=8 << 30).endswith(",Flat")  # budget allows full vectors
    assert ann.choose_index_type(1_000_000, 384, memory_budget=500 << 20) == "IVF4096_HNSW32,SQ8"
    assert ann.choose_index_type(1_000_000, 384) == "IVF4096_HNSW32,SQ4"  # SQ8 and its ids take 25.5 %
    assert ann.choose_index_type(1_000_000, 384, memory_budget=250 << 20) == "IVF4096_HNSW32,SQ4"
    assert ann.choose_index_type(1_000_000, 384, memory_budget=80 << 20).startswith("OPQ48_192,IVF4096_HNSW32,PQ48")
    assert ann.choose_index_type(60_000, 2051).startswith("IVF1024_HNSW32,")


def test_chosen_index_fits_its_budget_and_tuning_reaches_the_recall_target():
    """On clustered vectors: the index chosen for a budget is no larger than the budget, and the
    tuned nprobe (with re-ranking) is the smallest value that reaches the target (the step below does not)."""
    rng = np.random.default_rng(0)
    dim, n = 64, 30_000
    centres = rng.standard_normal((200, dim)).astype(np.float32)
    data = centres[rng.integers(0, 200, n + 300)] + 0.6 * rng.standard_normal((n + 300, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    base, queries = data[:n], data[n:]
    budget = ann.flat_bytes(n, dim) // 4
    spec = ann.choose_index_type(n, dim, memory_budget=budget)
    assert spec != "Flat"
    index = ann.build_index(spec, dim)
    ann.train(index, base[rng.choice(n, ann.training_size(index, n, dim), replace=False)])
    index.add_with_ids(base, np.arange(n))
    assert len(faiss.serialize_index(index)) <= budget

    truth = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]

    def search(q, k, value):  # as the store searches: lossy codes find candidates, exact vectors re-rank them
        found = index.search(q, k * ann.REFINE_FACTOR, params=ann.search_params(index, value, None))[1]
        return ann.rerank(q, found, lambda ids: base[ids], k)[1]

    tuning = ann.tune(index, search, queries, truth, target=0.9)
    assert tuning.reached and tuning.knob == "nprobe" and tuning.recall >= 0.9
    values = ann.knob(index).values
    below = values[values.index(tuning.value) - 1] if tuning.value != values[0] else None
    assert below is None or ann.recall_at_k(search(queries, 10, below), truth) < 0.9


def test_pca_step_keeps_inner_product_rankings():
    """faiss's PCA centres vectors; under inner product that adds a per-item bias (-<mean, x>). ann.train
    applies the projection uncentred, so dropping a few low-variance directions keeps the ranking."""
    rng = np.random.default_rng(0)
    dim, n = 64, 20_000
    spread = np.linspace(1, 0.05, dim).astype(np.float32)
    centres = rng.standard_normal((300, dim)).astype(np.float32) * spread
    data = (
        centres[rng.integers(0, 300, n + 300)] + 0.4 * rng.standard_normal((n + 300, dim)).astype(np.float32) * spread
    )
    data += 0.6 * rng.standard_normal(dim).astype(np.float32)  # a large common mean, as real embeddings have
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    base, queries = data[:n], data[n:]
    truth = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    recalls = {}
    for name, train in (("ann.train", ann.train), ("faiss", lambda index, x: index.train(x))):
        index = ann.build_index("PCA56,IVF64,Flat", dim)
        train(index, base)
        index.add_with_ids(base, np.arange(n))
        index = faiss.deserialize_index(faiss.serialize_index(index))  # the fix survives a save
        recalls[name] = ann.recall_at_k(index.search(queries, 10, params=ann.search_params(index, 64, None))[1], truth)
    assert recalls["ann.train"] > 0.85 and recalls["faiss"] < 0.5, recalls


def test_rerank_orders_candidates_by_exact_score():
    vectors = np.eye(5, dtype=np.float32)
    queries = np.array([[0, 0, 1, 0, 0], [1, 0.5, 0, 0, 0]], dtype=np.float32)
    candidates = np.array([[0, 2, 4, -1], [3, 1, 0, -1]])
    scores, ids = ann.rerank(queries, candidates, lambda wanted: vectors[wanted], 2)
    assert ids.tolist() == [[2, 0], [0, 1]] and scores.tolist() == [[1.0, 0.0], [1.0, 0.5]]
    assert ann.refines("IVF4096_HNSW32,SQ6") and ann.refines("OPQ48_192,IVF4096_HNSW32,PQ48")
    assert not ann.refines("Flat") and not ann.refines("HNSW32") and not ann.refines("IVF1024,Flat")


def test_sizes_and_index_types_are_parsed_with_clear_errors():
    assert ann.parse_size("2GiB") == 2 << 30 and ann.parse_size("512MB") == 512_000_000
    assert ann.parse_size("1.5G") == int(1.5 * 2**30) and ann.parse_size("4096") == 4096
    with pytest.raises(MoairError, match="not a size"):
        ann.parse_size("lots")
    assert ann.parse_index_type("IDMap2,Flat") == "Flat" and ann.parse_index_type("AUTO") == "auto"
    with pytest.raises(MoairError, match="not a faiss index_factory string"):
        ann.parse_index_type("IVF-but-wrong")
    with pytest.raises(MoairError, match="OPQ rotation first"):
        ann.build_index("IVF64,PQ32", 2051)  # 2051 is not divisible by 32


# -- an approximate index of real embeddings -----------------------------------------------------


@pytest.fixture(scope="module")
def ivf_index(tmp_path_factory) -> Path:
    """320 text entries (real e5 embeddings) in an IVF16,SQ8 index split into shards of 100."""
    path = tmp_path_factory.mktemp("ivf") / "texts.moair"
    with Engine.open(path, create=True) as engine:
        engine.configure(index_type="IVF16,SQ8", shard_size=100)
        report = engine.add_entries(entries(320))
    assert report.added == 320 and report.maintenance.startswith("vector index rebuilt as IVF16,SQ8")
    return path


def copy_index(source: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_ivf_index_is_trained_tuned_and_searched_across_shards(ivf_index):
    with Engine.open(ivf_index) as engine:
        info = engine.stats()
        assert (info.index_type, info.requested_index_type, info.exact) == ("IVF16,SQ8", "IVF16,SQ8", False)
        assert info.shards == 4 and info.items == 320 and info.tombstones == 0
        assert info.search_knob.startswith("nprobe=") and info.recall_estimate >= 0.95 and info.tuned_items == 320
        assert info.index_bytes < info.flat_bytes  # 1-byte codes; each shard also holds the 16 centroids
        assert engine.store.verify() == []
        texts = sentences(320)
        for i in range(0, 320, 29):  # every shard answers
            assert finds_itself(engine, f"t{i}", texts[i])
        # thresholds work on the re-ranked (exact) scores of an approximate index
        hits = engine.search(texts[5], k=20, modality="text")
        floor = hits[6].score
        kept = engine.search(texts[5], k=20, modality="text", min_score=floor)
        assert [h.item_id for h in kept] == [h.item_id for h in hits if h.score >= floor]
        assert hits == sorted(hits, key=lambda h: -h.score)
        # the scores are exact: each is the sum of its per-expert terms computed from the stored vectors
        assert all(abs(sum(h.contributions.values()) - h.score) < 1e-3 for h in hits)
        gap = engine.search(texts[5], k=20, modality="text", max_drop=0.0)
        assert 1 <= len(gap) <= 20 and all(a.score == b.score for a, b in zip(gap, gap[1:]))


def test_delete_and_add_touch_no_full_shard(ivf_index, tmp_path):
    """Removing an item only marks its vector dead (no shard file is rewritten); adding writes
    only the shard that grows; both are visible to the next reader."""
    index = copy_index(ivf_index, tmp_path)
    before = shard_files(index)
    text = sentences(320)[7]
    with Engine.open(index) as engine:
        assert engine.remove(["t7"]) == 1
        assert engine.search(text, k=1, modality="text")[0].path != "t7"
    assert shard_files(index) == before
    with Engine.open(index) as engine:
        assert engine.stats().tombstones == 1 and len(engine) == 319 and engine.store.verify() == []
        assert all(h.path != "t7" for h in engine.search(text, k=20, modality="text"))
        extra = Entry(key="new", text="a silver spaceship above the moon")
        assert engine.add_entries([extra]).added == 1
    after = shard_files(index)
    assert len(before - after) == 1 and len(after - before) == 1  # the last shard, rewritten under a new name
    with Engine.open(index) as engine:
        assert finds_itself(engine, "new", extra.text) and engine.store.verify() == []


def test_updated_item_keeps_its_id_and_leaves_a_tombstone(ivf_index, tmp_path):
    """Re-analysis (an expert or encoder changed version) keeps the item id; the old vector becomes
    a tombstone that search skips."""
    import sqlite3

    index = copy_index(ivf_index, tmp_path)
    db = sqlite3.connect(index / "moair.sqlite")
    with db:
        db.execute("UPDATE items SET expert_versions = '{}' WHERE id IN (SELECT item_id FROM files WHERE path = 't3')")
    db.close()
    with Engine.open(index) as engine:
        item_id = engine.inspect("t3").item_id
        report = engine.add_entries(entries(320))
        assert (report.updated, report.added) == (1, 0)
        assert engine.inspect("t3").item_id == item_id
        info = engine.stats()
        assert (info.items, info.tombstones) == (320, 1) and engine.store.verify() == []
        hits = engine.search(sentences(320)[3], k=3, modality="text")
        assert hits[0].path == "t3" and [h.item_id for h in hits].count(item_id) == 1


def test_optimize_compacts_retrains_and_retunes(ivf_index, tmp_path):
    index = copy_index(ivf_index, tmp_path)
    with Engine.open(index) as engine:
        assert engine.remove([f"t{i}" for i in range(0, 60)]) == 60
        assert engine.stats().tombstones == 60
        summary = engine.optimize()
        info = engine.stats()
    assert "IVF16,SQ8" in summary and "reaches recall@10" in summary
    assert (info.items, info.tombstones, info.shards) == (260, 0, 3)
    with Engine.open(index) as engine:
        assert engine.store.verify() == []
        assert finds_itself(engine, "t100", sentences(320)[100])


def test_many_deletions_compact_on_their_own(ivf_index, tmp_path):
    index = copy_index(ivf_index, tmp_path)
    with Engine.open(index) as engine:
        engine.remove([f"t{i}" for i in range(0, 100)])  # more than a quarter of the vectors
        info = engine.stats()
        assert (info.items, info.tombstones) == (220, 0)
        assert engine.store.verify() == []


def test_auto_index_leaves_exact_search_when_the_collection_outgrows_it(tmp_path, monkeypatch):
    """With exact search's limit lowered to 200 vectors, an auto index of 320 entries is rebuilt
    as IVF (codes chosen for the default budget, a quarter of Flat) and tuned."""
    monkeypatch.setattr(ann, "EXACT_SCAN_BYTES", 200 * 2051 * 4)
    monkeypatch.setattr(ann, "MIN_IVF_VECTORS", 256)
    with Engine.open(tmp_path / "auto.moair", create=True) as engine:
        engine.add_entries(entries(150))
        assert engine.stats().index_type == "Flat"
        report = engine.add_entries(entries(320))
        info = engine.stats()
    assert report.maintenance == "vector index rebuilt as IVF16,SQ4 (was Flat)"
    assert info.index_type == "IVF16,SQ4" and info.search_knob and info.recall_estimate >= 0.95
    assert info.index_bytes <= info.flat_bytes / 4


def test_requested_type_that_cannot_train_yet_searches_exactly(tmp_path):
    with Engine.open(tmp_path / "small.moair", create=True) as engine:
        engine.configure(index_type="IVF64,SQ8")
        report = engine.add_entries(entries(40))
        assert engine.stats().index_type == "Flat"
        assert report.maintenance == "IVF64,SQ8 needs 256 items to train on; searching exactly until then"
        assert finds_itself(engine, "t5", sentences(40)[5])


def test_tombstones_do_not_count_as_items_when_choosing_to_rebuild(ivf_index, tmp_path):
    """270 live items and 50 tombstones (below the compaction share): a requested IVF64 (which
    trains on 256 or more) is built, since the live items are enough."""
    index = copy_index(ivf_index, tmp_path)
    with Engine.open(index) as engine:
        engine.remove([f"t{i}" for i in range(50)])
        assert (engine.stats().items, engine.stats().tombstones) == (270, 50)
        engine.configure(index_type="IVF64,SQ8")
        report = engine.add_entries([])
        assert report.maintenance == "vector index rebuilt as IVF64,SQ8 (was IVF16,SQ8)"
        assert engine.store.verify() == []


def test_hnsw_index_skips_tombstones_until_optimize(ivf_index, tmp_path):
    """HNSW cannot remove vectors: deletions stay tombstones, searched around, until optimize."""
    index = copy_index(ivf_index, tmp_path)
    with Engine.open(index) as engine:
        engine.configure(index_type="HNSW16")
        engine.optimize()
        assert engine.stats().search_knob.startswith("efSearch=")
        engine.remove(["t11", "t12"])
        assert engine.stats().tombstones == 2
        assert_each_item_finds_itself(engine)  # across 4 id-mapped shards with a tombstone filter
        assert all(h.path not in ("t11", "t12") for h in engine.search(sentences(320)[11], k=10, modality="text"))
        engine.optimize()
        assert engine.stats().tombstones == 0 and engine.store.verify() == []


def assert_each_item_finds_itself(engine: Engine) -> None:
    """Every live item's stored vector, searched through FAISS, finds that item (its best match)."""
    item_ids = [engine.inspect(f"t{i}").item_id for i in range(320) if engine.store.catalog.paths_of([f"t{i}"])]
    found = top_k(engine.store, engine.store.item_vectors(item_ids), k=3)[1]
    assert all(item_id in row for item_id, row in zip(item_ids, found))


def test_flat_shards_with_tombstones_answer_every_item(ivf_index, tmp_path):
    index = copy_index(ivf_index, tmp_path)
    with Engine.open(index) as engine:
        engine.configure(index_type="Flat")
        engine.optimize()
        engine.remove(["t5", "t150"])
        assert (engine.stats().shards, engine.stats().tombstones) == (4, 2)
        assert_each_item_finds_itself(engine)


def test_large_shards_are_memory_mapped_for_readers(ivf_index, monkeypatch):
    monkeypatch.setattr(shards, "MMAP_MIN_BYTES", 0)
    with Engine.open(ivf_index) as engine:
        assert engine.stats().memory_mapped_shards == 4
        assert finds_itself(engine, "t42", sentences(320)[42])


def test_lost_trained_template_is_retrained_from_sqlite(ivf_index, tmp_path):
    index = copy_index(ivf_index, tmp_path)
    for trained in (index / shards.FOLDER).glob("trained-*.faiss"):
        trained.write_bytes(b"not faiss")
    with Engine.open(index) as engine:
        assert engine.stats().index_type == "IVF16,SQ8" and engine.store.verify() == []
        assert finds_itself(engine, "t42", sentences(320)[42])


def test_cli_optimize_remove_and_stats(ivf_index, tmp_path):
    index = copy_index(ivf_index, tmp_path)

    def run(*args):
        result = subprocess.run([MOAIR, *map(str, args)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert json.loads(run("remove", "t1", "t2", "nothing", "--index", index, "--json")) == {
        "removed": 2,
        "items_in_index": 318,
    }
    optimized = json.loads(
        run("optimize", "--index", index, "--index-type", "IVF8,SQ8", "--recall-target", "0.9", "--json")
    )
    assert optimized["stats"]["index_type"] == "IVF8,SQ8" and optimized["stats"]["recall_target"] == 0.9
    assert optimized["stats"]["recall_estimate"] >= 0.9 and optimized["stats"]["tombstones"] == 0
    human = run("stats", "--index", index)
    assert "IVF8,SQ8 (as requested)" in human and "recall@10 estimate" in human and "of exact Flat" in human
    bad = subprocess.run([MOAIR, "optimize", "--index", index, "--index-type", "IVF-x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a faiss index_factory string" in bad.stderr and "Traceback" not in bad.stderr


def test_index_from_before_shards_opens_and_is_upgraded(ivf_index, tmp_path):
    """An index made by the previous version (no vector ids, no manifest, one vectors.faiss) is
    searched by a reader as it is, and a writer upgrades it in place."""
    import sqlite3

    index = copy_index(ivf_index, tmp_path)
    db = sqlite3.connect(index / "moair.sqlite")
    with db:  # the items table as the previous version made it, without vector ids
        db.execute(
            "CREATE TABLE old_items (id INTEGER PRIMARY KEY AUTOINCREMENT, content_hash TEXT NOT NULL UNIQUE,"
            " perception TEXT NOT NULL, verbalization TEXT NOT NULL, expert_versions TEXT NOT NULL,"
            " vector BLOB NOT NULL, added_at REAL NOT NULL, modality TEXT NOT NULL DEFAULT 'image')"
        )
        db.execute(
            "INSERT INTO old_items SELECT id, content_hash, perception, verbalization, expert_versions, vector,"
            " added_at, modality FROM items"
        )
        db.execute("DROP TABLE items")
        db.execute("ALTER TABLE old_items RENAME TO items")
        db.execute("DELETE FROM meta WHERE key IN ('vectors', 'next_vector_id')")
    db.close()
    import shutil

    shutil.rmtree(index / shards.FOLDER)
    (index / "vectors.faiss").write_bytes(b"the old single FAISS file")
    text = sentences(320)[9]
    with Engine.open(index) as reader:
        assert len(reader) == 320 and finds_itself(reader, "t9", text) and reader.store.verify() == []
    with Engine.open(index, create=True) as writer:
        writer.remove(["t10"])
        assert writer.add_entries([Entry(key="late", text="a silver spaceship above the moon")]).added == 1
    assert not (index / "vectors.faiss").exists()
    with Engine.open(index) as engine:
        assert engine.stats().items == 320 and engine.store.verify() == []
        assert finds_itself(engine, "t9", text) and finds_itself(engine, "late", "a silver spaceship above the moon")
