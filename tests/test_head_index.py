"""A trained projection head in an index (``moair train-head``): the real text embedder trained on
the vendored real triples (tests/data/factual_pairs), applied to the stored vectors and to queries,
recorded in the index, removable, and never leaving a half-switched index behind."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from devices import DEVICE
from typer.testing import CliRunner

from api.cli import app
from indexer.errors import MoairError
from indexer.head import ProjectionHead
from indexer.store import HEADS_FOLDER, Store
from indexer.store.vectors import VectorIndex
from retriever import Engine

TRIPLES = Path(__file__).parent / "data" / "factual_pairs" / "triples.jsonl"
QUERIES = ("a dog", "a cat sleeping", "coffee cup", "a red kite in the sky")


def results(index: Path) -> dict[str, list[tuple[int, float]]]:
    with Engine.open(index) as engine:
        return {q: [(h.item_id, h.score) for h in engine.search(q, k=5)] for q in QUERIES}


def raw_caption_vectors(index: Path, ids: list[int]) -> np.ndarray:
    """Caption blocks as SQLite stores them (before any head)."""
    with Store.open(index) as store:
        where = store.config.layout.slices()["caption"]
        dim = store.config.layout.dim
    db = sqlite3.connect(index / "moair.sqlite")
    rows = dict(db.execute(f"SELECT id, vector FROM items WHERE id IN ({','.join('?' * len(ids))})", ids))
    db.close()
    return np.stack([np.frombuffer(rows[i], np.float32, count=dim)[where.start : where.stop - 1] for i in ids])


@pytest.fixture(scope="module")
def few_triples(tmp_path_factory) -> Path:
    """The first 80 real triples (to keep embedding time short) and one broken line."""
    path = tmp_path_factory.mktemp("triples") / "triples.jsonl"
    lines = TRIPLES.read_text().splitlines()[:80]
    path.write_text("\n".join(lines + ['{"query": "a", "positive": 3}']) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(sample_index, few_triples, tmp_path_factory):
    """(copy of the sample index with a language head trained through the CLI, the CLI's JSON, results before)."""
    index = tmp_path_factory.mktemp("head") / "samples.moair"
    shutil.copytree(sample_index, index)
    before = results(index)
    run = CliRunner().invoke(app, ["train-head", str(few_triples), "--index", str(index), "--steps", "80", "--json"])
    assert run.exit_code == 0, run.output
    return index, json.loads(run.stdout), before


def test_training_lowers_held_out_loss_and_is_recorded_in_the_index(trained):
    index, output, _ = trained
    assert output["triples"] == 80 and output["skipped_lines"] == 1 and "line 81" in output["problems"][0]
    report = output["reports"]["language"]
    assert report["heldout_loss_after"] < report["heldout_loss_before"]
    assert list(output["heads"]) == ["language"]  # the packaged backbone has no text tower: no visual head
    files = list((index / HEADS_FOLDER).iterdir())
    assert [f.name for f in files] == [f"language-{output['heads']['language'].removeprefix('head-')}.npz"]
    with Engine.open(index) as engine:
        assert engine.stats().heads == output["heads"]


def test_stored_vectors_stay_raw_and_are_searched_through_the_head(trained):
    index, output, before = trained
    head = ProjectionHead.load(next((index / HEADS_FOLDER).iterdir()))
    with Engine.open(index) as engine:
        ids = [item_id for item_id, _ in before["a dog"]]
        where = engine.store.config.layout.slices()["caption"]
        searched = engine.store.item_vectors(ids)[:, where.start : where.stop - 1]
        assert np.allclose(searched, head.apply(raw_caption_vectors(index, ids)), atol=1e-6)
        assert (
            engine.store.query_layout.blocks[0].unrelated_similarity
            != engine.store.config.layout.blocks[0].unrelated_similarity
        )
        hits = engine.search("a dog", k=3)
        assert "dog" in hits[0].path and hits[0].score > 0  # still finds the dog, above the moved chance level
        assert [h.score for h in hits] != [s for _, s in before["a dog"][:3]]  # and it is the head's score
    assert results(index) == results(index)  # a fresh open searches the same way


def test_removing_the_head_gives_back_the_original_search(trained, tmp_path):
    index, _, before = trained
    copy = tmp_path / "copy.moair"
    shutil.copytree(index, copy)
    run = CliRunner().invoke(app, ["train-head", "--remove", "--index", str(copy), "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == {"heads": {}} and not any((copy / HEADS_FOLDER).iterdir())
    after = results(copy)
    for query in QUERIES:
        assert [i for i, _ in after[query]] == [i for i, _ in before[query]]
        assert np.allclose([s for _, s in after[query]], [s for _, s in before[query]], atol=1e-5)


def test_a_failure_while_switching_leaves_the_old_index_whole(trained, tmp_path, monkeypatch):
    index, _, _ = trained
    copy = tmp_path / "copy.moair"
    shutil.copytree(index, copy)
    searched_before = results(copy)
    head = ProjectionHead(np.eye(384, dtype=np.float32)[::-1].copy())  # another head: reversed axes

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill would, after the head file is written, before the switch

    with Engine.open(copy, create=True) as engine:
        monkeypatch.setattr(VectorIndex, "rebuild", fail)
        with pytest.raises(KeyboardInterrupt):
            engine.store.set_heads({"language": head})
        monkeypatch.undo()
    assert results(copy) == searched_before
    with Engine.open(copy) as engine:
        assert engine.stats().heads == trained[1]["heads"]


def test_a_damaged_head_file_is_a_clear_error(trained, tmp_path):
    index, _, _ = trained
    copy = tmp_path / "copy.moair"
    shutil.copytree(index, copy)
    head_file = next((copy / HEADS_FOLDER).iterdir())
    head_file.write_bytes(head_file.read_bytes()[:100])
    with pytest.raises(MoairError, match="not a readable projection head"):
        Engine.open(copy)
    head_file.unlink()
    with pytest.raises(MoairError, match="no projection head at"):
        Engine.open(copy)


def test_bad_requests_are_clear_errors(sample_index, tmp_path):
    copy = tmp_path / "copy.moair"
    shutil.copytree(sample_index, copy)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"nope": 1}\n')
    for arguments, message in [
        ([], "give a triples file"),
        ([str(TRIPLES), "--space", "visual"], "no 'visual' head for this index; it has: language"),
        ([str(empty)], "no usable triple"),
    ]:
        run = CliRunner().invoke(app, ["train-head", *arguments, "--index", str(copy)])
        assert isinstance(run.exception, MoairError) and message in str(run.exception)  # main() prints it, exit 2
    assert not (copy / HEADS_FOLDER).exists()


def test_a_cross_modal_backbone_gets_a_visual_head_too(tiny_clip, photo_dir, few_triples, tmp_path):
    index = tmp_path / "clip.moair"
    with Engine.open(index, create=True, backbone="clip", checkpoint=tiny_clip, device=DEVICE) as engine:
        engine.add([photo_dir("dog", "kite")])
        assert engine.head_spaces() == ["language", "visual"]
        reports = engine.train_head(few_triples, spaces=["visual"], steps=20)
        assert list(reports) == ["visual"] and reports["visual"].dim == engine.analyzer.backbone.dim
        hits = engine.search("a kite", k=2)
        assert len(hits) == 2 and all(h.contributions["visual"] != 0 for h in hits)
        assert list(engine.stats().heads) == ["visual"]
