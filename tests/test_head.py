"""The projection head (``moair train-head``): E5-V's text-only recipe on real text triples.

Training uses the real default text embedder (e5-small) on the vendored factual-summary triples
(tests/data/factual_pairs, see its README). Embedding is the slow part, so a subset is embedded
once per module and every test reuses it.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from indexer import head as head_module
from indexer.encoders import TEXT_EMBEDDERS
from indexer.errors import MoairError
from indexer.head import ProjectionHead, TrainingReport
from indexer.head_training import Triple, read_triples, train_head

TRIPLES = Path(__file__).parent / "data" / "factual_pairs" / "triples.jsonl"
SUBSET = 80  # triples embedded for the training tests (~220 distinct texts, a few seconds)


@pytest.fixture(scope="module")
def triples() -> list[Triple]:
    return read_triples(TRIPLES)[:SUBSET]


@pytest.fixture(scope="module")
def embedder(triples):
    """e5-small's query and passage functions, memoised so each text is embedded once per module."""
    encoder = TEXT_EMBEDDERS.create("e5-small")
    cache: dict[tuple[str, str], np.ndarray] = {}
    calls = {"query": 0, "passage": 0}

    def memo(kind, embed):
        def run(texts):
            calls[kind] += 1
            missing = [t for t in dict.fromkeys(texts) if (kind, t) not in cache]
            if missing:
                cache.update({(kind, t): row for t, row in zip(missing, embed(missing))})
            return np.stack([cache[(kind, t)] for t in texts])

        return run

    queries, passages = memo("query", encoder.embed_queries), memo("passage", encoder.embed_passages)
    queries([t.query for t in triples])
    passages([t.positive for t in triples] + [t.negative for t in triples if t.negative])
    return queries, passages, encoder


@pytest.fixture(scope="module")
def trained(triples, embedder):
    queries, passages, encoder = embedder
    seen = []
    head, report = train_head(
        triples,
        queries,
        passages,
        steps=150,
        batch_size=32,
        seed=0,
        encoder=encoder.name,
        encoder_version=encoder.version,
        progress=lambda *args: seen.append(args),
    )
    return head, report, seen


def info_nce(anchors, positives, negatives, temperature=0.05):
    """Numpy InfoNCE over all positives and negatives as candidates (the texts here are distinct)."""
    logits = anchors @ np.concatenate([positives, negatives]).T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(anchors)), np.arange(len(anchors))].mean())


# -- the vendored data --------------------------------------------------------------------------


def test_vendored_triples_read_cleanly():
    triples = read_triples(TRIPLES)
    assert len(triples) == 368 and triples.problems == [] and triples.skipped == 0
    assert all(t.negative and t.negative != t.positive for t in triples)


# -- training on real text ----------------------------------------------------------------------


def test_training_lowers_train_and_heldout_loss(trained, triples):
    head, report, seen = trained
    assert report.triples == SUBSET and report.train_triples + report.heldout_triples == SUBSET
    assert 0.1 * SUBSET < report.heldout_triples < 0.3 * SUBSET
    assert report.dim == 384 and head.dim == 384 and head.encoder == "e5-small"
    # the loss training minimises goes down, over the steps and on the whole training split
    batch_losses = [loss for _, _, loss in seen]
    assert [step for step, _, _ in seen] == list(range(1, 151)) and all(total == 150 for _, total, _ in seen)
    assert np.mean(batch_losses[-20:]) < 0.7 * np.mean(batch_losses[:5])
    assert report.train_loss_after < report.train_loss_before
    # and it generalises: held-out loss (unseen queries) drops, and the kept step is the best one
    assert report.heldout_loss_after < 0.9 * report.heldout_loss_before, report
    assert report.heldout_loss_after == min(e.heldout_loss for e in report.evaluations)
    assert report.evaluations[0].step == 0 and report.evaluations[0].heldout_loss == report.heldout_loss_before
    assert report.heldout_accuracy_before is not None and 0 <= report.heldout_accuracy_after <= 1
    assert report.seconds >= report.train_seconds > 0


def test_trained_head_applies_with_numpy(trained, triples, embedder):
    """``apply`` (numpy) reproduces what training measured (torch): the loss over the subset drops."""
    head, _, _ = trained
    queries, passages, _ = embedder
    a = queries([t.query for t in triples])
    p = passages([t.positive for t in triples])
    n = passages([t.negative for t in triples])
    mapped = head.apply(a)
    assert mapped.dtype == np.float32 and mapped.shape == a.shape
    np.testing.assert_allclose(np.linalg.norm(mapped, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(mapped, a, atol=1e-3)  # training moved the map away from the identity
    assert info_nce(head.apply(a), head.apply(p), head.apply(n)) < info_nce(a, p, n)


def test_identity_head_changes_nothing(triples, embedder):
    queries, passages, _ = embedder
    rows = queries([t.query for t in triples[:10]])
    identity = ProjectionHead.identity(384)
    assert identity.is_identity()
    np.testing.assert_allclose(identity.apply(rows), rows, atol=1e-6)
    np.testing.assert_allclose(identity.apply(rows[0]), rows[0], atol=1e-6)  # one row keeps its shape
    assert np.array_equal(identity.apply(np.zeros((2, 384))), np.zeros((2, 384)))  # an absent block stays zero
    with pytest.raises(MoairError, match="384-d"):
        identity.apply(np.ones((2, 512)))
    # training for zero steps returns the identity, with before == after
    head, report = train_head(triples, *embedder[:2], steps=0)
    assert head.is_identity() and report.best_step == 0
    assert report.heldout_loss_after == report.heldout_loss_before


def test_training_is_seeded(triples, embedder):
    first, _ = train_head(triples, *embedder[:2], steps=20, seed=3)
    again, _ = train_head(triples, *embedder[:2], steps=20, seed=3)
    assert first.fingerprint == again.fingerprint


def test_training_needs_torch(monkeypatch, triples, embedder):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(MoairError, match=r"pip install 'moair\[checkpoints\]'"):
        train_head(triples, *embedder[:2], steps=1)


# -- save / load --------------------------------------------------------------------------------


def test_save_load_roundtrip(trained, tmp_path, embedder):
    head, report, _ = trained
    path = head.save(tmp_path / "head.npz")
    loaded = ProjectionHead.load(path, dim=384)
    assert np.array_equal(loaded.matrix, head.matrix) and loaded.matrix.dtype == np.float32
    assert loaded.fingerprint == head.fingerprint and loaded.version == f"head-{head.fingerprint}"
    assert (loaded.encoder, loaded.encoder_version) == (head.encoder, head.encoder_version)
    assert isinstance(loaded.training, TrainingReport) and loaded.training == report
    rows = embedder[0](["a dog on a beach", "고양이"])
    assert np.array_equal(loaded.apply(rows), head.apply(rows))
    # a different matrix has a different fingerprint
    assert ProjectionHead.identity(384).fingerprint != head.fingerprint


def test_save_is_atomic(trained, tmp_path, monkeypatch):
    head, _, _ = trained
    target = tmp_path / "head.npz"
    ProjectionHead.identity(384).save(target)
    head.save(target)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.npz"]
    assert ProjectionHead.load(target).fingerprint == head.fingerprint

    def crash(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(head_module, "durable_replace", crash)
    with pytest.raises(OSError):
        ProjectionHead.identity(384).save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.npz"]  # no temporary file left
    assert ProjectionHead.load(target).fingerprint == head.fingerprint  # the old head is intact


def test_bad_head_files(trained, tmp_path):
    head, _, _ = trained
    good = head.save(tmp_path / "good.npz")
    with pytest.raises(MoairError, match="no projection head"):
        ProjectionHead.load(tmp_path / "missing.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a head at all")
    for path in (truncated, garbage):
        with pytest.raises(MoairError, match="not a readable projection head"):
            ProjectionHead.load(path)
    with pytest.raises(MoairError, match="384-d embeddings, but this encoder's are 512-d"):
        ProjectionHead.load(good, dim=512)
    # a changed matrix no longer matches its recorded fingerprint
    with np.load(good) as archive:
        metadata = str(archive["metadata"][()])
        matrix = archive["matrix"].copy()
    matrix[0, 0] += 1.0
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, matrix=matrix, metadata=np.array(metadata))
    with pytest.raises(MoairError, match="fingerprint"):
        ProjectionHead.load(tampered)
    # some other npz
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, matrix=np.eye(4, dtype=np.float32), metadata=np.array(json.dumps({"format": "other"})))
    with pytest.raises(MoairError, match="not a moair projection head"):
        ProjectionHead.load(foreign)
    assert zipfile.is_zipfile(good)  # a plain .npz, readable with numpy alone


# -- reading triples ----------------------------------------------------------------------------


def test_read_triples_skips_and_reports_bad_lines(tmp_path):
    lines = [
        json.dumps({"query": "a dog", "positive": "a puppy", "negative": "a cat"}),  # 1 good
        "",  # 2 blank: ignored, not a problem
        "{not json",  # 3
        json.dumps({"query": "a dog"}),  # 4 no positive
        json.dumps({"query": "  ", "positive": "x"}),  # 5 empty query
        json.dumps({"query": 3, "positive": "x"}),  # 6 wrong type
        json.dumps(["a", "b", "c"]),  # 7 not an object
        json.dumps({"sent0": "two men", "sent1": "people", "hard_neg": "nobody"}),  # 8 good (SimCSE names)
        json.dumps({"query": "q", "positive": "p", "negative": None}),  # 9 good, no negative
        json.dumps({"query": "q", "positive": "p", "negative": "p"}),  # 10 positive == negative
        json.dumps({"query": "q", "positive": "p", "negative": 5}),  # 11 wrong type
        "   ",  # 12 blank
    ]
    path = tmp_path / "triples.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    triples = read_triples(path)
    assert triples == [
        Triple(query="a dog", positive="a puppy", negative="a cat"),
        Triple(query="two men", positive="people", negative="nobody"),
        Triple(query="q", positive="p", negative=None),
    ]
    assert triples.skipped == 7
    assert [p.split(":")[0] for p in triples.problems] == [f"line {n}" for n in (3, 4, 5, 6, 7, 10, 11)]
    assert "bad JSON" in triples.problems[0] and "missing 'positive'" in triples.problems[1]
    assert "'query' is empty" in triples.problems[2] and "must be a string" in triples.problems[3]
    summary = triples.problem_summary(limit=2)
    assert summary.startswith("skipped 7 line(s): line 3") and summary.endswith("and 5 more")


def test_read_triples_refuses_unusable_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x"}\nnot json\n\n', encoding="utf-8")
    with pytest.raises(MoairError, match=r"no usable triple in .*bad\.jsonl.*line 1.*line 2"):
        read_triples(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(MoairError, match="empty"):
        read_triples(empty)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"query": "a", "positive": "b"}\n{"query": "caf\xe9", "positive": "b"}\n')
    with pytest.raises(MoairError, match="not UTF-8 text \\(line 2"):
        read_triples(latin)
    with pytest.raises(MoairError, match="no triples file"):
        read_triples(tmp_path / "missing.jsonl")
    with pytest.raises(MoairError, match="no triples file"):
        read_triples(tmp_path)
