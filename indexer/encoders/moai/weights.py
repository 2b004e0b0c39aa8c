"""Reading a MoAI checkpoint folder: the published ``BK-Lee/MoAI-7B`` layout (``config.json``,
safetensors shards named in ``model.safetensors.index.json`` or one ``model.safetensors``, and the
SentencePiece ``tokenizer.model``).

Sizes are read from the tensors' shapes (the safetensors headers), not assumed, so the loader also
reads smaller models of the same layout. Every checkpoint name must land on a module parameter
and every parameter must be in the checkpoint (``check_names``), with equal shapes; a mismatch is
a clear error listing the first differences, never a silently random-initialised layer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from indexer.errors import MoairError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
VISION_PREFIX = "vit.vision_tower.vision_model."
# Buffers older transformers saved with CLIP (recomputed here, never read).
IGNORED = re.compile(r"^vit\.vision_tower\.vision_model\.embeddings\.position_ids$")
MIXER_GATE = re.compile(r"^model\.layers\.(\d+)\.attention\.moai_GA_img\.weight$")
# Fixed in MoAI's code rather than written in its config.
IMAGE_SIZE = 490
MIXER_HEADS = 4
COMPRESSOR_HEADS = 4
VISION_HEAD_DIM = 64


def weight_files(folder: Path) -> dict[str, Path]:
    """Checkpoint name -> the safetensors file holding it."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise MoairError(f"{index} is not a safetensors index (no readable weight_map: {e})") from None
        files = {name: folder / file for name, file in weight_map.items()}
        missing = sorted({str(path.name) for path in files.values() if not path.is_file()})
        if missing:
            raise MoairError(f"{folder} lacks the weight files its index names: {', '.join(missing[:5])}")
        return files
    single = folder / SINGLE_FILE
    if single.is_file():
        from safetensors import safe_open

        with safe_open(single, framework="pt") as f:
            return {name: single for name in f.keys()}
    raise MoairError(f"{folder} has neither {INDEX_FILE} nor {SINGLE_FILE}: not a MoAI checkpoint folder")


def tensor_shapes(files: Mapping[str, Path]) -> dict[str, tuple[int, ...]]:
    """Shapes from the safetensors headers (no tensor is read)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():
        try:
            with safe_open(path, framework="pt") as f:
                present = set(f.keys())
                for name in names:
                    if name not in present:
                        raise MoairError(f"{path.name} does not hold {name}, which the index places there")
                    shapes[name] = tuple(f.get_slice(name).get_shape())
        except MoairError:
            raise
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise MoairError(f"cannot read {path}: {str(e).splitlines()[0][:200]}") from None
    return shapes


def _count(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    found = {int(m.group(1)) for name in shapes if (m := re.match(pattern, name))}
    return max(found) + 1 if found else 0


def architecture(config: Mapping, shapes: Mapping[str, tuple[int, ...]]):
    """The ``Architecture`` of a checkpoint: attention heads, norms and rotary settings from its
    config, every other size from its tensors."""
    from indexer.encoders.moai.model import Architecture

    def shape(name: str) -> tuple[int, ...]:
        try:
            return shapes[name]
        except KeyError:
            raise MoairError(f"the checkpoint has no {name}: not a MoAI checkpoint") from None

    try:
        heads, kv_heads = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
        rms_eps, theta = float(config["rms_norm_eps"]), float(config.get("rope_theta", 10000))
        max_positions = int(config.get("max_position_embeddings", 2048))
    except (KeyError, TypeError, ValueError) as e:
        raise MoairError(f"config.json lacks a readable InternLM2 setting: {e}") from None
    scaling = config.get("rope_scaling") or None
    if scaling is not None and scaling.get("type", scaling.get("rope_type")) != "dynamic":
        raise MoairError(f"rope_scaling {scaling} is not supported (MoAI uses dynamic NTK scaling)")
    rows, hidden = shape("model.tok_embeddings.weight")
    mixers = tuple(sorted(int(m.group(1)) for name in shapes if (m := MIXER_GATE.match(name))))
    inner = shape("moai_compressor.layers.0.0.to_q.weight")[0]
    vision_hidden = shape(VISION_PREFIX + "embeddings.class_embedding")[0]
    return Architecture(
        hidden=hidden,
        layers=_count(shapes, r"^model\.layers\.(\d+)\."),
        heads=heads,
        kv_heads=kv_heads,
        intermediate=shape("model.layers.0.feed_forward.w1.Plora_main.weight")[0],
        embedding_rows=rows,
        output_rows=shape("output.weight")[0],
        rms_eps=rms_eps,
        rope_theta=theta,
        rope_dynamic_factor=float(scaling["factor"]) if scaling else None,
        max_positions=max_positions,
        lora_rank=shape("model.layers.0.attention.wqkv.Plora_A.weight")[0],
        mixer_layers=mixers,
        mixer_rank=shape(f"model.layers.{mixers[0]}.attention.moai_SA_img.linear_q.0.weight")[0] if mixers else 0,
        mixer_heads=MIXER_HEADS,
        compressor_depth=_count(shapes, r"^moai_compressor\.layers\.(\d+)\."),
        compressor_heads=COMPRESSOR_HEADS,
        compressor_head_dim=inner // COMPRESSOR_HEADS,
        compressor_latents=shape("moai_compressor.latents")[0],
        compressor_ff=shape("moai_compressor.layers.0.1.1.weight")[0],
        vision_hidden=vision_hidden,
        vision_layers=_count(shapes, r"^vit\.vision_tower\.vision_model\.encoder\.layers\.(\d+)\."),
        vision_heads=max(1, vision_hidden // VISION_HEAD_DIM),
        vision_intermediate=shape(VISION_PREFIX + "encoder.layers.0.mlp.fc1.weight")[0],
        vision_patch=shape(VISION_PREFIX + "embeddings.patch_embedding.weight")[-1],
        image_size=IMAGE_SIZE,
    )


def parameter_name(checkpoint_name: str, vision_keeps_prefix: bool) -> str:
    """The module parameter a checkpoint tensor loads into. transformers 5 dropped the
    ``vision_model.`` level from ``CLIPVisionModel``'s own names; the checkpoint has it."""
    if checkpoint_name.startswith(VISION_PREFIX) and not vision_keeps_prefix:
        return "vit.vision_tower." + checkpoint_name[len(VISION_PREFIX) :]
    return checkpoint_name


def check_names(
    checkpoint: Mapping[str, tuple[int, ...]], parameters: Mapping[str, tuple[int, ...]], vision_keeps_prefix: bool
) -> list[str]:
    """Problems between checkpoint tensors and module parameters (empty when every name and shape
    matches). The vision position table may differ in rows: it is interpolated on load."""
    problems, mapped = [], {}
    for name, shape in checkpoint.items():
        if IGNORED.match(name):
            continue
        mapped[parameter_name(name, vision_keeps_prefix)] = (name, shape)
    for target, (name, shape) in sorted(mapped.items()):
        if target not in parameters:
            problems.append(f"unexpected tensor {name} {list(shape)}")
        elif tuple(parameters[target]) != tuple(shape) and not target.endswith("position_embedding.weight"):
            problems.append(f"{name} is {list(shape)}, the model expects {list(parameters[target])}")
    problems += [
        f"missing tensor for {target} {list(shape)}"
        for target, shape in sorted(parameters.items())
        if target not in mapped
    ]
    return problems


def describe_problems(folder: Path, problems: Sequence[str]) -> str:
    listed = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
    return f"{folder} does not fit the MoAI architecture ({len(problems)} differences): {listed}"


def load_model(folder: Path, device: str, dtype):
    """(MoAIModel in eval mode on ``device`` in ``dtype``, its config) from a checkpoint folder. The
    modules are built without memory (the meta device) and take the checkpoint's tensors as they
    are read, shard by shard."""
    import torch

    from indexer.encoders.moai.model import MoAIModel, interpolate_positions

    try:
        config = json.loads((folder / "config.json").read_text())
    except ValueError as e:
        raise MoairError(f"{folder / 'config.json'} is not JSON: {e}") from None
    files = weight_files(folder)
    shapes = tensor_shapes(files)
    arch = architecture(config, shapes)
    with torch.device("meta"):
        model = MoAIModel(arch)
    parameters = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    keeps_prefix = any(name.startswith(VISION_PREFIX) for name in parameters)
    problems = check_names(shapes, parameters, keeps_prefix)
    if problems:
        raise MoairError(describe_problems(folder, problems))
    from safetensors import safe_open

    state = {}
    for path in dict.fromkeys(files.values()):
        with safe_open(path, framework="pt", device="cpu") as f:
            for name in f.keys():
                if IGNORED.match(name) or name not in files:
                    continue
                tensor = f.get_tensor(name)
                target = parameter_name(name, keeps_prefix)
                if target.endswith("position_embedding.weight") and tuple(tensor.shape) != parameters[target]:
                    tensor = interpolate_positions(tensor, arch.image_size // arch.vision_patch)
                state[target] = tensor.to(device=device, dtype=dtype)
    model.load_state_dict(state, assign=True, strict=True)
    for module in model.modules():  # buffers not saved in checkpoints: CLIP's position ids
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer.is_meta:
                if name != "position_ids":
                    raise MoairError(f"the MoAI modules have a buffer {name} that no checkpoint fills")
                module.register_buffer(
                    name, torch.arange(buffer.shape[-1], device=device).expand(buffer.shape), persistent=False
                )
    return model.eval(), config
