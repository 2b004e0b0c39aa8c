"""The open_clip backbone through its real loading path: a tiny randomly initialised open_clip model
of the ViT-B-32 family, saved by open_clip's own functions in its hub layout and as a single weights
file (tests/tiny_openclip.py), loaded by open_clip, indexed with and searched through. Random
weights say nothing about quality; these tests check the plumbing: both layouts give the same
model, text and image embeddings share one space, what the index records, that a changed or
missing model is refused, and the messages for wrong paths, names and weights."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from devices import DEVICE
from tiny_openclip import (
    TINY_OPENCLIP_CONFIG,
    TINY_OPENCLIP_DIM,
    TINY_OPENCLIP_NAME,
    make_tiny_openclip,
    make_tiny_openclip_file,
)
from typer.testing import CliRunner

from api.cli import app
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.encoders.openclip import OpenClipBackbone
from indexer.errors import MoairError
from indexer.experts.base import Analysis
from indexer.images import load_image
from indexer.store import Store
from retriever import Engine

open_clip = pytest.importorskip("open_clip")  # the openclip extra; `make test` installs it

TEXTS = ["a dog", "two cats asleep on a red sofa in the afternoon sun", "개", ""]
HUB_FILES = {"open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin"}


@pytest.fixture(scope="module")
def tiny_openclip_file(tmp_path_factory):
    """(weights file, architecture name) of the same tiny model, the name registered with open_clip."""
    return make_tiny_openclip_file(tmp_path_factory.mktemp("tiny-openclip-file"))


@pytest.fixture
def hub_copy(tiny_openclip, tmp_path):
    """A private copy of the hub-layout folder, for tests that change or remove it."""
    return shutil.copytree(tiny_openclip, tmp_path / "openclip")


def _register(tmp_path, name: str, **changes) -> str:
    """Register a variant of the tiny architecture with open_clip as ``name``; return the name."""
    config = json.loads(json.dumps(TINY_OPENCLIP_CONFIG))
    for key, value in changes.items():
        section, _, field = key.rpartition("__")
        (config[section] if section else config)[field] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return name


def test_the_tiny_model_is_built_once_and_the_same_every_time(tmp_path):
    folder = make_tiny_openclip(tmp_path / "a")
    assert {p.name for p in folder.iterdir()} == HUB_FILES
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20_000_000
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["model_cfg"] == TINY_OPENCLIP_CONFIG and set(config["preprocess_cfg"]) >= {"mean", "std"}
    stamp = (folder / "open_clip_model.safetensors").stat().st_mtime_ns
    assert make_tiny_openclip(folder) == folder  # idempotent: kept as it is
    assert (folder / "open_clip_model.safetensors").stat().st_mtime_ns == stamp
    other = make_tiny_openclip(tmp_path / "b")  # seeded: byte for byte the same model
    for name in HUB_FILES:
        assert (other / name).read_bytes() == (folder / name).read_bytes(), name
    weights, name = make_tiny_openclip_file(tmp_path / "file")
    assert name == TINY_OPENCLIP_NAME and name in open_clip.list_models()
    assert weights.read_bytes() == (folder / "open_clip_model.safetensors").read_bytes()
    assert make_tiny_openclip_file(tmp_path / "file") == (weights, name)


def test_folder_and_single_file_load_the_same_model(tiny_openclip, tiny_openclip_file, photo):
    from_folder = OpenClipBackbone(checkpoint=str(tiny_openclip), device=DEVICE)
    weights, name = tiny_openclip_file
    from_file = OpenClipBackbone(checkpoint=str(weights), model_name=name, device=DEVICE)
    analyses = [Analysis.of(load_image(photo(n))) for n in ("dog", "chelsea")]
    for backbone in (from_folder, from_file):
        assert backbone.name == "openclip" and backbone.cross_modal and backbone.dim == TINY_OPENCLIP_DIM
        assert backbone.family == "clip"
        assert (backbone.unrelated_similarity, backbone.unrelated_text_similarity) == (
            CHANCE_LEVELS["clip"].similarity,
            CHANCE_LEVELS["clip"].text_similarity,
        )
        assert backbone.version == f"openclip-{backbone.fingerprint}"
    assert from_folder.options() == {"checkpoint": str(tiny_openclip)}
    assert from_file.options() == {"checkpoint": str(weights), "model_name": name}
    assert np.array_equal(from_folder.embed_texts(TEXTS), from_file.embed_texts(TEXTS))
    assert np.allclose(from_folder.embed(analyses), from_file.embed(analyses), atol=1e-6)
    # the hub .bin of the same weights, given as a single file, loads too (torch.load path)
    bin_file = tiny_openclip / "open_clip_pytorch_model.bin"
    from_bin = OpenClipBackbone(checkpoint=str(bin_file), model_name=name, device=DEVICE)
    assert np.array_equal(from_bin.embed_texts(TEXTS), from_folder.embed_texts(TEXTS))
    # the name in another case is accepted; the recorded name is open_clip's own
    shouted = OpenClipBackbone(checkpoint=str(weights), model_name=name.upper(), device=DEVICE)
    assert shouted.options()["model_name"] == name


def test_text_and_image_embeddings_share_one_space(tiny_openclip, photo):
    backbone = OpenClipBackbone(checkpoint=str(tiny_openclip), device=DEVICE)
    analyses = [Analysis.of(load_image(photo(n))) for n in ("dog", "chelsea", "kite")]  # different sizes
    texts = backbone.embed_texts(TEXTS)
    images = backbone.embed(analyses)
    assert texts.shape == (len(TEXTS), TINY_OPENCLIP_DIM) and images.shape == (len(analyses), TINY_OPENCLIP_DIM)
    assert texts.dtype == np.float32 and images.dtype == np.float32
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    cosines = images @ texts.T  # one space: every image-text cosine is a number in [-1, 1]
    assert np.isfinite(cosines).all() and np.abs(cosines).max() <= 1 + 1e-5
    assert not np.allclose(texts[0], texts[1], atol=1e-3) and not np.allclose(images[0], images[1], atol=1e-3)
    # deterministic, and a batch embeds each item as it would alone
    assert np.array_equal(texts, backbone.embed_texts(TEXTS))
    assert np.allclose(texts, np.stack([backbone.embed_texts([t])[0] for t in TEXTS]), atol=1e-5)
    assert np.allclose(images, np.stack([backbone.embed([a])[0] for a in analyses]), atol=1e-5)
    again = OpenClipBackbone(checkpoint=str(tiny_openclip), device=DEVICE)
    assert again.version == backbone.version and np.array_equal(again.embed(analyses), images)


def test_precision_follows_dtype(tiny_openclip, photo):
    analyses = [Analysis.of(load_image(photo("dog")))]
    full = OpenClipBackbone(checkpoint=str(tiny_openclip), device=DEVICE)
    half = OpenClipBackbone(checkpoint=str(tiny_openclip), device=DEVICE, dtype="bfloat16")
    assert next(full.model.parameters()).dtype == full._torch.float32
    assert next(half.model.parameters()).dtype == half._torch.bfloat16
    assert half.version == full.version  # the same model, run at another precision
    image, text = half.embed(analyses), half.embed_texts(["a dog"])
    assert image.dtype == np.float32 and np.allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)
    assert np.allclose(image, full.embed(analyses), atol=0.03)
    assert np.allclose(text, full.embed_texts(["a dog"]), atol=0.03)
    with pytest.raises(MoairError, match="--dtype must be"):
        OpenClipBackbone(checkpoint=str(tiny_openclip), device=DEVICE, dtype="int8")


def test_cli_indexes_and_searches_with_an_openclip_folder(tiny_openclip, photo_dir, tmp_path):
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
            "openclip",
            "--checkpoint",
            str(tiny_openclip),
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


def test_an_index_of_a_single_weights_file_records_its_architecture(tiny_openclip_file, photo_dir, tmp_path):
    source, name = tiny_openclip_file
    weights = shutil.copy(source, tmp_path / "weights.safetensors")
    index = tmp_path / "file.moair"
    run = CliRunner().invoke(
        app,
        [
            "index",
            str(photo_dir("dog")),
            "--index",
            str(index),
            "--backbone",
            "openclip",
            "--checkpoint",
            str(weights),
            "--model-name",
            name,
            "--device",
            DEVICE,
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["added"] == 1
    assert Store.open(index).config.backbone.options == {"checkpoint": str(weights), "model_name": name}
    with Engine.open(index, device=DEVICE) as engine:  # rebuilt from what the index recorded
        assert engine.analyzer.backbone.options()["model_name"] == name
        assert len(engine.search("a dog", k=1)) == 1
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the weights: another model
    weights.write_bytes(bytes(data))
    with pytest.raises(MoairError, match="put the original checkpoint back"):
        Engine.open(index)


def test_clear_messages_for_wrong_paths_names_and_weights(tiny_openclip_file, hub_copy, tmp_path):
    weights, _ = tiny_openclip_file
    with pytest.raises(MoairError, match="needs a checkpoint"):
        Engine.open(tmp_path / "a.moair", create=True, backbone="openclip")
    with pytest.raises(MoairError, match="does not exist"):
        Engine.open(tmp_path / "b.moair", create=True, backbone="openclip", checkpoint=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoairError, match="not an open_clip folder"):
        Engine.open(tmp_path / "c.moair", create=True, backbone="openclip", checkpoint=tmp_path / "empty")
    (tmp_path / "transformers").mkdir()
    (tmp_path / "transformers" / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(MoairError, match="use --backbone clip"):
        OpenClipBackbone(checkpoint=str(tmp_path / "transformers"))
    with pytest.raises(MoairError, match="single weights file: say which open_clip architecture"):
        Engine.open(tmp_path / "d.moair", create=True, backbone="openclip", checkpoint=weights)
    with pytest.raises(MoairError, match="--model-name is for a single weights file"):
        OpenClipBackbone(checkpoint=str(hub_copy), model_name="ViT-B-32")
    with pytest.raises(MoairError, match=r"'ViT-B-33' is not an open_clip architecture; close ones: ViT-B-32"):
        OpenClipBackbone(checkpoint=str(weights), model_name="ViT-B-33")
    assert not any((tmp_path / f"{n}.moair").exists() for n in "abcd")

    wide = _register(tmp_path, "moair-tiny-ViT-wide", vision_cfg__width=64)
    with pytest.raises(MoairError, match="do not fit the moair-tiny-ViT-wide architecture"):
        OpenClipBackbone(checkpoint=str(weights), model_name=wide, device=DEVICE)
    config = json.loads((hub_copy / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["layers"] = 3
    (hub_copy / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(MoairError, match="do not fit the architecture in .*open_clip_config.json.*Missing key"):
        OpenClipBackbone(checkpoint=str(hub_copy), device=DEVICE)
    (hub_copy / "open_clip_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MoairError, match="cannot load the open_clip model"):
        OpenClipBackbone(checkpoint=str(hub_copy), device=DEVICE)
    for weight_file in hub_copy.glob("open_clip_*model*"):
        weight_file.unlink()
    with pytest.raises(MoairError, match="but no weights"):
        OpenClipBackbone(checkpoint=str(hub_copy), device=DEVICE)


def test_sigmoid_models_and_hub_files_are_handled_offline(tiny_openclip_file, tmp_path, monkeypatch):
    """A model with a logit bias (SigLIP's sigmoid loss) gets SigLIP's chance levels; an architecture
    whose tokenizer open_clip would fetch from the Hugging Face hub loads only from local files:
    the hub is offline while open_clip loads, even where HF_HUB_OFFLINE is not set."""
    import huggingface_hub.constants

    weights, _ = tiny_openclip_file
    sigmoid = _register(tmp_path, "moair-tiny-sigmoid", init_logit_bias=-10.0)
    backbone = OpenClipBackbone(checkpoint=str(weights), model_name=sigmoid, device=DEVICE)
    assert backbone.family == "siglip"
    assert (backbone.unrelated_similarity, backbone.unrelated_text_similarity) == (
        CHANCE_LEVELS["siglip"].similarity,
        CHANCE_LEVELS["siglip"].text_similarity,
    )

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub = _register(tmp_path, "moair-tiny-hub-tokenizer", text_cfg__hf_tokenizer_name="moair-tests/no-such-tokenizer")
    with pytest.raises(MoairError, match="not on this machine, and nothing is downloaded"):
        OpenClipBackbone(checkpoint=str(weights), model_name=hub, device=DEVICE)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # put back after the load


def test_without_open_clip_the_message_says_what_to_install(tiny_openclip, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if the extra were not installed
    with pytest.raises(MoairError, match=r"pip install 'moair\[openclip\]'"):
        OpenClipBackbone(checkpoint=str(tiny_openclip), device=DEVICE)
