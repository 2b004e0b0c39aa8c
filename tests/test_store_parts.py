"""The store's parts alone, without a model: the SQLite catalog (``indexer.store.catalog``) and the
vector index over it (``indexer.store.vectors``), on synthetic unit vectors."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import numpy as np
import pytest

from indexer import ann
from indexer.errors import DamagedIndex, MoairError
from indexer.mixture import Block, Layout
from indexer.records import Perception, Verbalization
from indexer.shards import Shards, VectorManifest
from indexer.store.catalog import DB_NAME, Batch, Catalog, FileEntry, NewItem, SkippedFile
from indexer.store.config import IndexConfig, PluginSpec
from indexer.store.formats import SCHEMA_VERSION
from indexer.store.vectors import VectorIndex

DIM = 16
LAYOUT = Layout(blocks=[Block(name="caption", dim=DIM - 1, unrelated_similarity=0.0)])
CONFIG = IndexConfig(
    text_embedder=PluginSpec(name="t"), backbone=PluginSpec(name="b"), experts=[], layout=LAYOUT, created_at=0.0
)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    rows[:, -1] = 1.0  # the block's presence flag
    rows[:, :-1] /= np.linalg.norm(rows[:, :-1], axis=1, keepdims=True)
    return rows


def item(name: str, vector: np.ndarray, versions: dict[str, str] | None = None) -> NewItem:
    return NewItem(
        name, Perception(width=1, height=1), Verbalization(moai="", retrieval=name), vector, versions or {"e": "1"}
    )


@pytest.fixture
def catalog(tmp_path):
    Catalog.create(tmp_path, CONFIG)
    opened, config = Catalog.open(tmp_path, writable=True)
    assert config.layout == LAYOUT
    yield opened
    opened.close()


def fill(catalog: Catalog, rows: np.ndarray) -> list[int]:
    names = [f"item-{i}" for i in range(len(rows))]
    added, dead = catalog.commit(
        Batch([item(n, r) for n, r in zip(names, rows)], [FileEntry(f"/photos/{n}", 1, 1, n) for n in names])
    )
    assert dead == []
    return added


def test_the_catalog_keeps_items_files_and_skips(catalog):
    rows = unit_rows(3)
    added = fill(catalog, rows)
    assert added == [1, 2, 3] and sorted(catalog.live_vector_ids().tolist()) == added
    chunks = list(catalog.vector_chunks(np.array([3, 1, 99])))
    assert [ids.tolist() for ids, _ in chunks] == [[3, 1]] and np.allclose(chunks[0][1], rows[[2, 0]])
    assert catalog.item_ids(np.array([[3, -1, 99]])).tolist() == [[3, -1, -1]]
    first = catalog.items([1])[0]
    assert first.paths == ["/photos/item-0"] and first.verbalization.retrieval == "item-0"
    assert np.allclose(catalog.vectors([2, 1]), rows[[1, 0]])
    assert catalog.stale_items({"e": "2"}) == {f"item-{i}": f"/photos/item-{i}" for i in range(3)}

    # re-analysed content keeps its item id and gets a new vector id; the old one is no longer live
    added, dead = catalog.commit(
        Batch([item("item-0", rows[0], {"e": "2"})], [FileEntry("/photos/item-0", 1, 1, "item-0")])
    )
    assert added == [4] and dead == [1] and catalog.item_id_for_hash("item-0") == 1
    # an item no file points at any more is removed with its vector id
    _, dead = catalog.commit(
        Batch(removed_paths=["/photos/item-1"], skipped=[SkippedFile("/photos/bad.jpg", 5, 5, "not an image")])
    )
    assert dead == [2] and catalog.items([2]) == []
    assert catalog.skip_counts() == {"skipped": 1, "bad_files": 1, "failed": 0}
    assert catalog.paths_of(["/photos/bad.jpg", "/photos/item-1", "/photos/item-2"]) == [
        "/photos/bad.jpg",
        "/photos/item-2",
    ]
    assert catalog.problems() == []


def test_non_utf8_paths_are_kept_as_their_bytes(catalog):
    name = b"/photos/caf\xe9.jpg".decode("utf-8", "surrogateescape")
    catalog.commit(Batch([item("latin-1", unit_rows(1)[0])], [FileEntry(name, 1, 1, "latin-1")]))
    assert catalog.items([1])[0].paths == [name] and catalog.file_state(name) is not None


def vector_index(catalog: Catalog, tmp_path, requested: str = ann.AUTO, rows=None) -> VectorIndex:
    index = VectorIndex(
        Shards(tmp_path / "vectors", DIM, VectorManifest(requested=requested)),
        rows or catalog.vector_chunks,
        catalog.live_vector_ids,
    )
    index.rebuild(LAYOUT)
    return index


def test_exact_search_finds_what_brute_force_finds_and_skips_tombstones(catalog, tmp_path):
    rows = unit_rows(200)
    fill(catalog, rows)
    index = vector_index(catalog, tmp_path)
    assert index.manifest.index_type == ann.EXACT and len(index) == 200 and index.problems() == []
    queries = unit_rows(5, seed=1)
    scores, ids = index.search(queries, 10)
    truth = np.argsort(-(queries @ rows.T), axis=1)[:, :10] + 1  # vector ids are 1..n
    assert ids.tolist() == truth.tolist() and np.all(np.diff(scores, axis=1) <= 1e-6)

    _, dead = catalog.commit(Batch(removed_paths=[f"/photos/item-{int(truth[0, 0]) - 1}"]))
    index.remove(dead)
    assert truth[0, 0] not in index.search(queries[:1], 10)[1] and len(index) == 199 and index.problems() == []
    only = np.array([5, 6, 7])
    assert set(index.search(queries[:1], 3, allowed=only)[1][0].tolist()) == {5, 6, 7}


def test_lossy_codes_are_reranked_with_the_catalogs_exact_vectors(catalog, tmp_path):
    rows = unit_rows(2000)
    fill(catalog, rows)
    index = vector_index(catalog, tmp_path, requested="IVF16,SQ4")
    manifest = index.manifest
    assert (
        manifest.index_type == "IVF16,SQ4"
        and manifest.knob == "nprobe"
        and manifest.recall_estimate >= manifest.recall_target
    )
    queries = rows[:20] + 0.01 * unit_rows(20, seed=2)
    scores, ids = index.search(queries, 5, knob_value=16)  # every list: only the codes are approximate
    exact = np.sum(queries[:, None, :] * rows[ids - 1], axis=2)
    assert np.allclose(scores, exact, atol=1e-5)  # the scores are the exact vectors', not the codes'
    assert ids[:, 0].tolist() == list(range(1, 21))


def test_a_search_hands_back_the_exact_rows_it_read_and_reads_them_once(catalog, tmp_path):
    rows = unit_rows(2000)
    fill(catalog, rows)
    reads = []

    def counted_rows(vector_ids=None):
        reads.append(vector_ids)
        return catalog.vector_chunks(vector_ids)

    queries = rows[:8] + 0.01 * unit_rows(8, seed=4)
    for requested in ("IVF16,SQ4", ann.AUTO):  # codes re-ranked with exact rows, then exact Flat
        index = vector_index(catalog, tmp_path / requested.replace(",", "-"), requested, counted_rows)
        assert (index.manifest.index_type == ann.EXACT) == (requested == ann.AUTO)
        reads.clear()
        scores, ids, found = index.search_with_rows(queries, 5)
        assert len(reads) == 1  # the contributions of the hits need no second read
        assert np.array_equal(found, rows[ids - 1])  # the exact rows of the vectors found, in rank order
        assert np.allclose(scores, np.einsum("qd,qkd->qk", queries, found), atol=1e-5)
        assert np.array_equal(index.search(queries, 5)[1], ids)  # the same ranking as a plain search
        twice = np.concatenate([queries, queries])  # queries that find the same vectors
        _, ids, found = index.search_with_rows(twice, 5)
        assert np.array_equal(found, rows[ids - 1])


def test_a_vector_the_catalog_does_not_hold_is_a_problem(catalog, tmp_path):
    fill(catalog, unit_rows(20))
    index = vector_index(catalog, tmp_path)
    index.add(np.array([999]), unit_rows(1, seed=3))
    assert index.problems() == ["FAISS searches 21 vectors, SQLite has 20 live ones"]
    index.remove([999])
    assert index.problems() == []


def stored_config(folder) -> str:
    with closing(sqlite3.connect(folder / DB_NAME)) as db:
        return db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0]


def store_config(folder, value: str) -> None:
    with closing(sqlite3.connect(folder / DB_NAME)) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (value,))


def test_an_index_of_format_1_is_read_as_it_is_and_upgraded_by_a_writer(tmp_path):
    Catalog.create(tmp_path, CONFIG)
    format_1 = {  # the configuration row as moair wrote it before plug-ins were PluginSpecs
        "schema_version": 1,
        "text_embedder": "e5-small",
        "backbone": "clip",
        "backbone_options": {"checkpoint": "/models/clip"},
        "backbone_version": "clip-1234",
        "experts": {"detection": "ssd/1", "owlv2": "owlv2-abcd"},
        "expert_options": {"owlv2": {"checkpoint": "/models/owlv2"}},
        "layout": LAYOUT.model_dump(),
        "created_at": 0.0,
    }
    store_config(tmp_path, json.dumps(format_1))
    reader, config = Catalog.open(tmp_path, writable=False)
    reader.close()
    assert config.text_embedder == PluginSpec(name="e5-small")
    assert config.backbone == PluginSpec(name="clip", options={"checkpoint": "/models/clip"}, version="clip-1234")
    assert config.experts == [
        PluginSpec(name="detection", version="ssd/1"),
        PluginSpec(name="owlv2", options={"checkpoint": "/models/owlv2"}, version="owlv2-abcd"),
    ]
    assert json.loads(stored_config(tmp_path)) == format_1  # a reader writes nothing
    writer, upgraded = Catalog.open(tmp_path, writable=True)
    writer.close()
    assert upgraded == config and upgraded.schema_version == SCHEMA_VERSION == 2
    assert IndexConfig.model_validate_json(stored_config(tmp_path)) == config


def test_a_newer_format_is_refused_and_a_damaged_row_is_named(tmp_path):
    Catalog.create(tmp_path, CONFIG)
    store_config(tmp_path, CONFIG.model_copy(update={"schema_version": SCHEMA_VERSION + 1}).model_dump_json())
    with pytest.raises(MoairError, match=f"uses index format {SCHEMA_VERSION + 1}, made by a newer moair"):
        Catalog.open(tmp_path, writable=True)
    for damaged in ('{"schema_version": 1, "experts": {}}', "[1, 2]", "{not json", '{"schema_version": "x"}'):
        store_config(tmp_path, damaged)
        with pytest.raises(DamagedIndex, match="its configuration row is damaged"):
            Catalog.open(tmp_path, writable=False)
