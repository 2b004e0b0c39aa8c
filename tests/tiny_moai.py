"""A tiny, randomly initialised MoAI checkpoint in the published ``BK-Lee/MoAI-7B`` layout.

The real checkpoint is 17.7 GB. This one has the same module tree and parameter names (InternLM2
with Partial LoRA, the MoAI-Mixer in layer 7, the compressor, a CLIP vision tower at 490 pixels
with 35 x 35 positions, the projector) at tiny widths, and is written as the published one is:

* ``config.json`` with InternLM2's keys (``num_key_value_heads``, ``rope_scaling`` dynamic, ...);
* two safetensors shards ``model-0000{1,2}-of-00002.safetensors`` in float16 and
  ``model.safetensors.index.json`` (``metadata.total_size`` and ``weight_map``), the vision tower
  under ``vit.vision_tower.vision_model.`` as transformers 4 named it;
* ``tokenizer.model``: a SentencePiece model with InternLM2's ids (``<unk>`` 0, ``<s>`` 1,
  ``</s>`` 2) and its turn markers ``[UNUSED_TOKEN_145]``/``[UNUSED_TOKEN_146]`` as pieces;
  ``<image>`` is the id after the vocabulary, so ``tok_embeddings`` has one row more than ``output``.

Weights are random (seeded): tests may rely on shapes, determinism and loading, not on meaning.
"""

from __future__ import annotations

import json
from pathlib import Path

from tiny_models import SEED, _build, train_spiece

HIDDEN = 64
LAYERS = 8  # MoAI's rule (layer + 1) % 8 == 0 puts the mixer in layer 7
SHARDS = 2


def _internlm2_spiece() -> bytes:
    return train_spiece(
        model_type="bpe",
        vocab_size=300,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        user_defined_symbols=["[UNUSED_TOKEN_145]", "[UNUSED_TOKEN_146]"],
    )


def make_tiny_moai(folder: Path) -> Path:
    """Build (once) a tiny random MoAI checkpoint in ``folder``."""
    return _build(folder, _write_tiny_moai)


def _write_tiny_moai(folder: Path) -> None:
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file

    from indexer.encoders.moai.model import Architecture, MoAIModel
    from indexer.encoders.moai.weights import VISION_PREFIX

    spiece = _internlm2_spiece()
    (folder / "tokenizer.model").write_bytes(spiece)
    vocab = spm.SentencePieceProcessor(model_proto=spiece).GetPieceSize()
    arch = Architecture(
        hidden=HIDDEN,
        layers=LAYERS,
        heads=4,
        kv_heads=2,
        intermediate=128,
        embedding_rows=vocab + 1,
        output_rows=vocab,
        rms_eps=1e-5,
        rope_theta=1e6,
        rope_dynamic_factor=1.0,
        max_positions=4096,
        lora_rank=8,
        mixer_layers=(7,),
        mixer_rank=8,
        mixer_heads=4,
        compressor_depth=2,
        compressor_heads=4,
        compressor_head_dim=8,
        compressor_latents=8,
        compressor_ff=HIDDEN,
        vision_hidden=64,
        vision_layers=2,
        vision_heads=1,
        vision_intermediate=128,
        vision_patch=14,
        image_size=490,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = MoAIModel(arch)
        with torch.no_grad():
            model.moai_compressor.latents.normal_(0, 0.02)
            for name, parameter in model.named_parameters():
                if (
                    "Plora_B" in name or "moai_" in name
                ):  # small or zero when trained from scratch; sized here so they matter
                    parameter.normal_(0, 0.2)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("vit.vision_tower.") and not name.startswith(VISION_PREFIX):
            name = VISION_PREFIX + name[len("vit.vision_tower.") :]
        state[name] = tensor.to(torch.float16).contiguous()
    names = list(state)
    weight_map, total = {}, 0
    for shard in range(SHARDS):
        file = f"model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
        part = {n: state[n] for n in names[shard * len(names) // SHARDS : (shard + 1) * len(names) // SHARDS]}
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {
        "architectures": ["MoAIModel"],
        "model_type": "internlm",
        "bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "intermediate_size": arch.intermediate,
        "num_attention_heads": arch.heads,
        "num_key_value_heads": arch.kv_heads,
        "num_hidden_layers": LAYERS,
        "max_position_embeddings": arch.max_positions,
        "rms_norm_eps": arch.rms_eps,
        "rope_theta": arch.rope_theta,
        "rope_scaling": {"type": "dynamic", "factor": 1.0},
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "vocab_size": vocab,
        "image_token_index": vocab,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
