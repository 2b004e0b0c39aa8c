"""MoAI-7B: moair's implementation read by parameter name.

Two kinds of evidence: (1) the full-size module tree, built without memory, accepts the 1,197
published parameter names and shapes recorded in tests/data/moai7b (see its NOTES.md for where
they come from); (2) a tiny random MoAI in the published on-disk layout (tests/tiny_moai.py) goes
through the real loader, and its embeddings, auxiliary input, mixer and generation behave as the
architecture says. Random weights say nothing about quality."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from devices import DEVICE

from indexer.encoders import BACKBONES
from indexer.encoders.moai import PIXEL_MEAN, panoptic_map, pascal_colormap
from indexer.encoders.moai.model import MoAIModel, PartialLoRALinear, interpolate_positions
from indexer.encoders.moai.weights import architecture, check_names, load_model
from indexer.errors import MoairError
from indexer.experts.base import Analysis
from indexer.experts.panoptic import SEGMENT_IDS
from indexer.images import load_image
from indexer.records import Detection

DATA = Path(__file__).parent / "data" / "moai7b"


@pytest.fixture(scope="module")
def published():
    """(config, {name: shape}) of BK-Lee/MoAI-7B as recorded in tests/data/moai7b."""
    config = json.loads((DATA / "config.json").read_text())
    names = [
        line.strip()
        for line in (DATA / "weight_map_keys.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    shapes = {
        name: tuple(shape) for name, shape, _ in json.loads((DATA / "predicted_index.json").read_text())["tensors"]
    }
    assert sorted(shapes) == sorted(names)  # the two records agree
    return config, shapes


def meta_parameters(arch) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = MoAIModel(arch)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def test_the_full_size_model_accepts_every_published_parameter_name_and_shape(published):
    config, shapes = published
    arch = architecture(config, shapes)
    assert (arch.hidden, arch.layers, arch.heads, arch.kv_heads, arch.intermediate) == (4096, 32, 32, 8, 14336)
    assert arch.mixer_layers == (7, 15, 23, 31) and arch.lora_rank == 256 and arch.image_tokens == 1225
    assert (arch.embedding_rows, arch.output_rows) == (92545, 92544)
    parameters = meta_parameters(arch)
    assert check_names(shapes, parameters, vision_keeps_prefix=False) == []
    assert len(parameters) == len(shapes) == 1197
    assert sum(int(np.prod(s)) for s in parameters.values()) == 8_868_637_720


def test_a_checkpoint_with_other_names_is_refused_with_the_differences(published):
    config, shapes = published
    parameters = meta_parameters(architecture(config, shapes))
    # InternLM-XComposer2 names its projections plainly; MoAI's loader must not take them silently
    renamed = {n.replace("attention.wo.Plora_main.weight", "attention.wo.weight"): s for n, s in shapes.items()}
    problems = check_names(renamed, parameters, vision_keeps_prefix=False)
    assert len(problems) == 64  # 32 unexpected + 32 missing
    assert "unexpected tensor model.layers.0.attention.wo.weight [4096, 4096]" in problems
    assert "missing tensor for model.layers.0.attention.wo.Plora_main.weight [4096, 4096]" in problems
    narrower = dict(shapes, **{"vision_proj.0.weight": (4096, 768)})
    assert check_names(narrower, parameters, vision_keeps_prefix=False) == [
        "vision_proj.0.weight is [4096, 768], the model expects [4096, 1024]"
    ]


def test_stock_clip_positions_are_interpolated_to_the_490_pixel_grid():
    table = torch.randn(577, 8)  # CLIP-L/336: CLS + 24 x 24
    table[1:] = 0.25  # a constant grid stays constant under bicubic resizing
    resized = interpolate_positions(table, 35)
    assert resized.shape == (1226, 8)
    assert torch.equal(resized[0], table[0]) and torch.allclose(resized[1:], torch.full((1225, 8), 0.25))


def test_partial_lora_changes_image_rows_only():
    layer = PartialLoRALinear(8, 6, rank=2)
    torch.nn.init.normal_(layer.Plora_B.weight)
    x = torch.randn(2, 5, 8)
    image_rows = torch.tensor([[False, True, True, False, False], [False] * 5])
    with torch.no_grad():
        plain, partial = layer.Plora_main(x), layer(x, image_rows)
    assert torch.equal(partial[~image_rows], plain[~image_rows])
    assert not torch.allclose(partial[image_rows], plain[image_rows])


@pytest.fixture(scope="module")
def moai(tiny_moai):
    return BACKBONES.create("moai", checkpoint=str(tiny_moai), device=DEVICE, dtype="float32")


@pytest.fixture
def analysis(photo):
    def make(name: str) -> Analysis:
        return Analysis.of(load_image(photo(name)))

    return make


def test_the_tiny_checkpoint_loads_through_the_published_layout(moai, tiny_moai):
    files = sorted(p.name for p in tiny_moai.iterdir())
    assert files == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.model",
    ]
    assert moai.arch.mixer_layers == (7,) and moai.dim == 64 and moai.version.startswith("moai-")
    assert moai.model.output.weight.dtype == torch.float32  # float16 on disk, as asked
    ids = moai.tokenizer.encode("a <image> [UNUSED_TOKEN_146]user\n")
    assert ids[0] == 1 and moai.tokenizer.image_id in ids and moai.tokenizer.special["[UNUSED_TOKEN_146]"] in ids


def test_embeddings_are_unit_rows_batch_independent_and_deterministic(moai, analysis):
    dog, kite = analysis("dog"), analysis("kite")
    together = moai.embed([dog, kite])
    assert together.shape == (2, 64) and np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    assert np.allclose(together[1], moai.embed([kite])[0], atol=1e-5)
    texts = moai.embed_texts(["a dog", "a kite flying over a wide sandy beach"])
    assert np.allclose(texts[0], moai.embed_texts(["a dog"])[0], atol=1e-5)  # left padding does not change it
    composed = moai.embed_composed(dog, "at night")
    assert composed.shape == (64,) and not np.allclose(composed, together[0], atol=1e-4)


def test_the_auxiliary_input_reaches_the_embedding_through_the_mixer(moai, analysis):
    plain, described = analysis("dog"), analysis("dog")
    described.perception.detections = [Detection(label="dog", score=0.9, box=(0.1, 0.2, 0.6, 0.9))]
    painted = analysis("dog")
    painted.cache[SEGMENT_IDS] = np.pad(np.ones((200, 200), dtype=np.int64), ((0, 290), (0, 290)))
    base, with_words = moai.embed([plain])[0], moai.embed([described])[0]
    assert not np.allclose(base, with_words, atol=1e-5)  # the verbalization is read
    # and the panoptic colour map, faintly: MoAI normalises the 0..1 map with 0..255 statistics
    # (kept, as its weights were trained so), so the map shifts the vision input by <= 1/68 std
    with torch.inference_mode():
        shift = (moai._auxiliary([plain]) - moai._auxiliary([painted])).abs().max()
    assert 1e-5 < float(shift) < 1e-2
    assert not np.array_equal(base, moai.embed([painted])[0])
    gates = [moai.model.model.layers[7].attention.moai_GA_img, moai.model.model.layers[7].attention.moai_GA_lang]
    saved = [gate.state_dict() for gate in gates]
    try:
        for gate in gates:  # all weight on the self-attention experts: the auxiliary tokens drop out
            gate.load_state_dict({"weight": torch.zeros_like(gate.weight), "bias": torch.tensor([-1e4, -1e4, 0.0])})
        assert np.allclose(moai.embed([plain])[0], moai.embed([described])[0], atol=1e-6)
    finally:
        for gate, state in zip(gates, saved):
            gate.load_state_dict(state)


def test_the_panoptic_map_uses_pascal_colours_by_segment_number(analysis):
    dog = analysis("dog")
    assert panoptic_map(dog, 490).shape == (490, 490, 3) and not panoptic_map(dog, 490).any()
    dog.cache[SEGMENT_IDS] = np.array([[-1, 0], [1, 2]])
    colours = panoptic_map(dog, 2)
    assert colours[0, 0].tolist() == [0, 0, 0] and colours[1, 0].tolist() == pytest.approx([128 / 255, 0, 0])
    assert colours[1, 1].tolist() == pytest.approx(pascal_colormap()[2].tolist())
    assert PIXEL_MEAN[0] > 100  # MoAI normalises on the 0..255 scale


def test_generation_with_the_cache_equals_recomputing_every_step(moai, analysis):
    dog = analysis("dog")
    answer = moai.generate("What is in the image?", dog, max_new_tokens=6)
    assert isinstance(answer, str) and answer == moai.generate("What is in the image?", dog, max_new_tokens=6)
    with torch.inference_mode():
        embeds, real, image_rows = moai._sequences(["What is in the image?"], [dog])
        aux = moai._auxiliary([dog])
        hidden, cache = moai.model(embeds, real, image_rows, aux)
        cached = []
        for _ in range(6):
            token = int(moai.model.output(hidden[:, -1]).argmax(-1))
            cached.append(token)
            real = torch.cat((real, torch.ones(1, 1, dtype=torch.bool, device=moai.device)), dim=1)
            hidden, cache = moai.model(moai._token_embeddings([token])[None], real, cache=cache)
        # recomputed from scratch: the prompt prefilled with the mixer, each new token as MoAI does
        # (no Partial LoRA and no mixer for generated tokens) — same logits, within float error
        prefix_hidden, prefix_cache = moai.model(
            embeds, torch.ones_like(embeds[..., 0], dtype=torch.bool), image_rows, aux
        )
        tokens = moai._token_embeddings(cached)[None]
        full, _ = moai.model(
            tokens, torch.ones(1, embeds.shape[1] + 6, dtype=torch.bool, device=moai.device), cache=prefix_cache
        )
        recomputed = [int(moai.model.output(prefix_hidden[:, -1]).argmax(-1))] + moai.model.output(full[0, :-1]).argmax(
            -1
        ).tolist()
    assert recomputed == cached


def test_broken_checkpoints_are_refused_clearly(tiny_moai, tmp_path):
    broken = tmp_path / "moai"
    shutil.copytree(tiny_moai, broken)
    (broken / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(MoairError, match="lacks the weight files its index names: model-00002-of-00002"):
        load_model(broken, "cpu", torch.float32)
    shutil.copytree(tiny_moai, broken, dirs_exist_ok=True)
    (broken / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(MoairError, match="not a SentencePiece model"):
        BACKBONES.create("moai", checkpoint=str(broken), device=DEVICE)
    (broken / "tokenizer.model").unlink()
    with pytest.raises(MoairError, match="no tokenizer.model"):
        BACKBONES.create("moai", checkpoint=str(broken), device=DEVICE)
    (broken / "model.safetensors.index.json").write_text("{")
    with pytest.raises(MoairError, match="not a safetensors index"):
        load_model(broken, "cpu", torch.float32)
