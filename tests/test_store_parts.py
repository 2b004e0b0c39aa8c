"""The store's parts alone, without a model: the SQLite catalog (``indexer.store.catalog``) and the
vector index over it (``indexer.store.vectors``), on synthetic unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import ann
from indexer.mixture import Block, Layout
from indexer.records import Perception, Verbalization
from indexer.shards import Shards, VectorManifest
from indexer.store.catalog import Catalog, FileEntry, NewItem, SkippedFile
from indexer.store.config import IndexConfig
from indexer.store.vectors import VectorIndex

DIM = 16
LAYOUT = Layout(blocks=[Block(name="caption", dim=DIM - 1, unrelated_similarity=0.0)])


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
    Catalog.create(tmp_path, IndexConfig(text_embedder="t", backbone="b", experts={}, layout=LAYOUT, created_at=0.0))
    opened, config = Catalog.open(tmp_path, writable=True)
    assert config.layout == LAYOUT
    yield opened
    opened.close()


def fill(catalog: Catalog, rows: np.ndarray) -> list[int]:
    names = [f"item-{i}" for i in range(len(rows))]
    added, dead = catalog.commit(
        [item(n, r) for n, r in zip(names, rows)], [FileEntry(f"/photos/{n}", 1, 1, n) for n in names]
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
    added, dead = catalog.commit([item("item-0", rows[0], {"e": "2"})], [FileEntry("/photos/item-0", 1, 1, "item-0")])
    assert added == [4] and dead == [1] and catalog.item_id_for_hash("item-0") == 1
    # an item no file points at any more is removed with its vector id
    _, dead = catalog.commit(
        removed_paths=["/photos/item-1"], skipped=[SkippedFile("/photos/bad.jpg", 5, 5, "not an image")]
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
    catalog.commit([item("latin-1", unit_rows(1)[0])], [FileEntry(name, 1, 1, "latin-1")])
    assert catalog.items([1])[0].paths == [name] and catalog.file_state(name) is not None


def vector_index(catalog: Catalog, tmp_path, requested: str = ann.AUTO) -> VectorIndex:
    index = VectorIndex(
        Shards(tmp_path / "vectors", DIM, VectorManifest(requested=requested)),
        catalog.vector_chunks,
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

    _, dead = catalog.commit(removed_paths=[f"/photos/item-{int(truth[0, 0]) - 1}"])
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


def test_a_vector_the_catalog_does_not_hold_is_a_problem(catalog, tmp_path):
    fill(catalog, unit_rows(20))
    index = vector_index(catalog, tmp_path)
    index.add(np.array([999]), unit_rows(1, seed=3))
    assert index.problems() == ["FAISS searches 21 vectors, SQLite has 20 live ones"]
    index.remove([999])
    assert index.problems() == []
