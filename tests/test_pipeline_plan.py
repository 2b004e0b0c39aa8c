"""Planning an indexing run without a model (``indexer.pipeline.plan_files``): which files are
analysed, which are unchanged, which bad files are left alone, which content is stale, and which
indexed or bad paths are gone from disk."""

from __future__ import annotations

import os

import numpy as np

from indexer.mixture import Block, Layout
from indexer.pipeline import IndexReport, plan_files
from indexer.records import Perception, Verbalization
from indexer.store import Batch, FileEntry, IndexConfig, NewItem, PluginSpec, SkippedFile, Store

VERSIONS = {"expert": "1"}
CONFIG = IndexConfig(
    text_embedder=PluginSpec(name="t"),
    backbone=PluginSpec(name="b"),
    experts=[],
    layout=Layout(blocks=[Block(name="caption", dim=7, unrelated_similarity=0.0)]),
    created_at=0.0,
)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_a_plan_analyses_only_what_changed_and_drops_what_is_gone(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    unchanged = write(photos / "unchanged.jpg", b"a")
    edited = write(photos / "edited.jpg", b"b")
    new = write(photos / "new.jpg", b"c")
    bad = write(photos / "bad.jpg", b"not an image")
    unreadable = write(photos / "unreadable.jpg", b"x")
    stale = write(photos / "stale.jpg", b"d")

    def state(path):
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns

    with Store.create(tmp_path / "plan.moair", CONFIG) as store:
        vector = np.zeros(8, np.float32)
        vector[0] = vector[-1] = 1.0
        items = [
            NewItem(name, Perception(width=1, height=1), Verbalization(moai="", retrieval=""), vector, versions)
            for name, versions in (("u", VERSIONS), ("e", VERSIONS), ("s", {"expert": "0"}), ("g", VERSIONS))
        ]
        store.commit(
            Batch(
                items,
                [
                    FileEntry(str(unchanged), *state(unchanged), "u"),
                    FileEntry(str(edited), state(edited)[0] + 1, state(edited)[1], "e"),  # the file changed since
                    FileEntry(str(stale), *state(stale), "s"),  # analysed by an older expert version
                    FileEntry(str(photos / "deleted.jpg"), 1, 1, "g"),  # no longer on disk
                ],
                skipped=[
                    SkippedFile(str(bad), *state(bad), "not an image"),  # bad bytes, unchanged: left alone
                    SkippedFile(str(unreadable), *state(unreadable), "cannot read file", kind="access"),  # tried again
                    SkippedFile(str(photos / "gone-bad.jpg"), 1, 1, "not an image"),
                ],
            )
        )
        report = IndexReport()
        plan = plan_files(store, [photos], VERSIONS, prune=True, report=report)

    assert sorted(os.path.basename(w.path) for w in plan.todo) == [
        "edited.jpg",
        "new.jpg",
        "stale.jpg",
        "unreadable.jpg",
    ]
    assert plan.stale == {"s": str(stale)}
    assert plan.gone == [str(photos / "deleted.jpg")] and plan.bad_gone == [str(photos / "gone-bad.jpg")]
    assert (report.unchanged, report.skipped_before, report.retried, report.failed) == (1, 1, 1, [])
    assert str(new) in {w.path for w in plan.todo}


def test_without_prune_nothing_is_taken_for_deleted(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    with Store.create(tmp_path / "plan.moair", CONFIG) as store:
        vector = np.zeros(8, np.float32)
        vector[0] = vector[-1] = 1.0
        store.commit(
            Batch(
                [NewItem("g", Perception(width=1, height=1), Verbalization(moai="", retrieval=""), vector, VERSIONS)],
                [FileEntry(str(photos / "deleted.jpg"), 1, 1, "g")],
            )
        )
        plan = plan_files(store, [photos], VERSIONS, prune=False, report=IndexReport())
    assert plan.todo == [] and plan.gone == [] and plan.bad_gone == []
