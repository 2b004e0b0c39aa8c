"""Checkpoint backbones (CLIP, SigLIP, open_clip, E5-V, MoAI) through their real loading path: tiny randomly
initialised checkpoints of the real architectures, saved in the real on-disk format
(tests/tiny_models.py), indexed with and searched through. Random weights say nothing about
quality; these tests check the plumbing: what the index records, that text queries reach the image
space, that an image finds itself, E5-V's prompts and pooling, and that a changed or missing
checkpoint is refused with a clear message."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from devices import DEVICE
from typer.testing import CliRunner

from api.cli import app
from indexer.encoders.e5v import E5VBackbone
from indexer.errors import MoairError
from indexer.experts.base import Analysis
from indexer.images import load_image
from retriever import Engine

PHOTOS = ("dog", "chelsea", "kite", "coffee")


CHECKPOINTS = [
    ("clip", "tiny_clip", "clip"),
    ("clip", "tiny_siglip", "siglip"),
    ("openclip", "tiny_openclip", "openclip"),
    ("e5v", "tiny_llava_next", "e5v"),
    ("moai", "tiny_moai", "moai"),
]
# the file holding each checkpoint's configuration, and what a missing checkpoint is called
CONFIG_FILE = {"openclip": "open_clip_config.json"}
MISSING = {"openclip": "does not exist"}


@pytest.fixture(params=CHECKPOINTS, ids=[fixture for _, fixture, _ in CHECKPOINTS])
def checkpoint(request, tmp_path):
    """(backbone name, a private copy of a tiny checkpoint (some tests change it), version prefix)."""
    backbone, fixture, family = request.param
    copy = tmp_path / fixture
    shutil.copytree(request.getfixturevalue(fixture), copy)
    return backbone, copy, family


def test_index_and_search_with_a_checkpoint_backbone(checkpoint, photo_dir, photo, tmp_path):
    backbone, checkpoint, family = checkpoint
    folder = photo_dir(*PHOTOS)
    index = tmp_path / "clip.moair"
    with Engine.open(index, create=True, backbone=backbone, checkpoint=checkpoint, device=DEVICE) as engine:
        report = engine.add([folder])
        assert report.added == len(PHOTOS) and report.skipped == []
        config = engine.store.config
        assert config.backbone.name == backbone and config.backbone.options == {"checkpoint": str(checkpoint)}
        assert config.backbone.version.startswith(f"{family}-")
        visual = config.layout.blocks[-1]
        assert visual.dim == engine.analyzer.backbone.dim and visual.unrelated_text_similarity is not None

    with Engine.open(index) as engine:  # a new process would do this: the checkpoint comes from the index
        hits = engine.search("a dog", k=4)
        assert len(hits) == 4
        assert all(h.contributions["visual"] != 0.0 for h in hits)  # the text query reached the image space
        image_hits = engine.search(image=photo("kite"), k=1)
        assert image_hits[0].path.endswith("darknet-kite.jpg")  # an image finds itself through both towers' space
        both = engine.search("a kite", image=photo("kite"), k=2)  # composed: "like this, but ..."
        assert len(both) == 2 and str(photo("kite")) not in [h.path for h in both]  # never its own reference


def test_a_changed_or_missing_checkpoint_is_refused(checkpoint, photo_dir, tmp_path):
    backbone, checkpoint, _ = checkpoint
    index = tmp_path / "clip.moair"
    with Engine.open(index, create=True, backbone=backbone, checkpoint=checkpoint, device=DEVICE) as engine:
        engine.add([photo_dir("dog")])
    config_file = checkpoint / CONFIG_FILE.get(backbone, "config.json")
    config = json.loads(config_file.read_text())
    config["initializer_factor"] = 0.5  # any change to the files: a different checkpoint
    config_file.write_text(json.dumps(config))
    with pytest.raises(MoairError, match="put the original checkpoint back"):
        Engine.open(index)
    shutil.rmtree(checkpoint)
    with pytest.raises(MoairError, match=MISSING.get(backbone, "not a checkpoint folder")):
        Engine.open(index)


def test_an_existing_index_refuses_other_models_instead_of_ignoring_them(tiny_clip, sample_index, tmp_path):
    index = tmp_path / "copy.moair"
    shutil.copytree(sample_index, index)
    with pytest.raises(
        MoairError, match="built with the efficientnet-lite3 backbone; a different one needs a new index"
    ):
        Engine.open(index, create=True, backbone="clip", checkpoint=tiny_clip)
    with pytest.raises(MoairError, match="built with the e5-small text embedder"):
        Engine.open(index, text_embedder="minilm")
    with pytest.raises(MoairError, match="built without the owlv2 expert"):
        Engine.open(index, create=True, expert_checkpoints={"owlv2": tiny_clip})
    with Engine.open(index, create=True, backbone="efficientnet-lite3") as engine:  # what it was built with: fine
        assert engine.store.config.backbone.name == "efficientnet-lite3"


def test_checkpoint_backbone_needs_a_real_checkpoint_folder(tmp_path):
    with pytest.raises(MoairError, match="needs a checkpoint folder"):
        Engine.open(tmp_path / "a.moair", create=True, backbone="clip")
    with pytest.raises(MoairError, match="not a checkpoint folder"):
        Engine.open(tmp_path / "b.moair", create=True, backbone="clip", checkpoint=tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(MoairError, match="cannot load the checkpoint"):
        Engine.open(tmp_path / "c.moair", create=True, backbone="clip", checkpoint=tmp_path / "bad")
    assert not (tmp_path / "a.moair").exists() and not (tmp_path / "b.moair").exists()


def test_cli_indexes_and_searches_with_a_clip_checkpoint(tiny_clip, photo_dir, tmp_path):
    index = tmp_path / "cli.moair"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "index",
            str(photo_dir("dog", "kite")),
            "--index",
            str(index),
            "--backbone",
            "clip",
            "--checkpoint",
            str(tiny_clip),
            "--device",
            DEVICE,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 2, result.output
    found = runner.invoke(app, ["search", "a kite", "--index", str(index), "--json", "-k", "2"])
    assert found.exit_code == 0, found.output
    assert len(json.loads(found.stdout)) == 2, found.output
    stats = runner.invoke(app, ["stats", "--index", str(index)])
    assert "clip" in stats.output


def test_e5v_prompts_pooling_and_left_padding(tiny_llava_next, photo):
    """E5-V's recipe: the Llama-3 chat wrapping of its one-word prompts, left padding so the last
    position is the prompt's last token (a text embeds the same alone and in a batch of longer and
    shorter ones), unit-length embeddings, and a composed image + text prompt."""
    e5v = E5VBackbone(checkpoint=str(tiny_llava_next), device=DEVICE)
    assert e5v.prompt("<sent>\nSummary above sentence in one word: ".replace("<sent>", "a dog")) == (
        "<|start_header_id|>user<|end_header_id|>\n\na dog\nSummary above sentence in one word: "
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
    )
    texts = ["a dog", "two cats asleep on a red sofa in the afternoon sun", "개"]
    batch = e5v.embed_texts(texts)
    alone = [e5v.embed_texts([t])[0] for t in texts]
    assert batch.shape == (3, e5v.dim) and np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    assert np.allclose(batch, np.stack(alone), atol=1e-4)  # padding on the left leaves each last token alone
    analyses = [Analysis.of(load_image(photo(name))) for name in ("dog", "chelsea")]
    images = e5v.embed(analyses)
    assert images.shape == (2, e5v.dim) and np.isfinite(images).all()
    assert np.allclose(images[0], e5v.embed(analyses[:1])[0], atol=1e-4)  # images of different sizes batch too
    composed = e5v.embed_composed(analyses[0], "at night")
    assert composed.shape == (e5v.dim,) and not np.allclose(composed, images[0], atol=1e-3)
