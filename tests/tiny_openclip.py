"""A tiny, randomly initialised open_clip model in open_clip's real on-disk formats.

Published open_clip models are hundreds of megabytes and the test environment cannot download
them. This builds a model of the real architecture family of open_clip's ``ViT-B-32`` (its
``CLIP`` class: a ViT image tower, a causal text transformer with open_clip's own BPE tokenizer,
both projected into one space) with a tiny config (``TINY_OPENCLIP_CONFIG``) and seeded random
weights, through open_clip's own functions: ``create_model`` builds it, ``save_for_hf`` (what
``push_to_hf_hub`` uploads) saves it. Two layouts:

* ``make_tiny_openclip(folder)``: the Hugging Face hub layout of open_clip models
  (``open_clip_config.json`` with ``model_cfg`` and ``preprocess_cfg``, ``open_clip_model.safetensors``,
  ``open_clip_pytorch_model.bin``), which ``create_model("local-dir:" + folder)`` loads.
  Published repositories of CLIP-tokenizer models also hold the tokenizer files of
  ``openai/clip-vit-large-patch14`` (``push_to_hf_hub`` adds them); open_clip does not read them
  for a model without ``hf_tokenizer_name`` (it uses its bundled BPE vocabulary), so they are left
  out here.
* ``make_tiny_openclip_file(folder)``: one weights file plus an architecture name, as
  ``create_model(name, pretrained=FILE)`` takes them. The tiny architecture
  (``TINY_OPENCLIP_NAME``) is not one of open_clip's built-in configs: the helper writes it as an
  open_clip model config (``<name>.json``, the format of ``open_clip/model_configs``) beside the
  weights and registers it with ``open_clip.add_model_config`` in this process, on every call.

The embeddings are meaningless (random weights): tests may rely on shapes, finiteness and
determinism, never on retrieval quality. Both builders are deterministic and idempotent: a folder
that is already complete is returned untouched (the file variant only registers its config again).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

SEED = 0
TINY_OPENCLIP_NAME = "moair-tiny-ViT"  # the architecture name of the single-file variant
TINY_OPENCLIP_DIM = 16  # embed_dim: both towers project to it
TINY_OPENCLIP_IMAGE_SIZE = 32
# The shape of open_clip's ViT-B-32.json, scaled down (ViT-B-32: embed_dim 512, vision 12 x 768 at
# 224 px, text 12 x 512). vocab_size and context_length stay those of open_clip's tokenizer.
TINY_OPENCLIP_CONFIG = {
    "embed_dim": TINY_OPENCLIP_DIM,
    "vision_cfg": {"image_size": TINY_OPENCLIP_IMAGE_SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
CONFIG_NAME = "open_clip_config.json"


class _NoTokenizerFiles:
    """``save_for_hf`` saves a tokenizer; open_clip's bundled ``SimpleTokenizer`` has no files to save."""

    def save_pretrained(self, dest) -> None:
        pass


def make_tiny_openclip(folder: Path) -> Path:
    """Build (once) the tiny model in open_clip's hf-hub layout in ``folder``; return the folder."""
    folder = Path(folder)
    if (folder / CONFIG_NAME).exists():  # written last: the folder is complete
        return folder
    import open_clip
    import torch
    from open_clip.push_to_hf_hub import save_for_hf

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        staging = Path(scratch)
        # create_model reads an architecture from a local folder's open_clip_config.json; with no
        # weights there it initialises the model randomly.
        (staging / CONFIG_NAME).write_text(json.dumps({"model_cfg": TINY_OPENCLIP_CONFIG}), encoding="utf-8")
        disabled = logging.root.manager.disable
        logging.disable(logging.WARNING)  # open_clip warns that the model starts random: it should
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(SEED)
                model = open_clip.create_model(f"local-dir:{staging}", device="cpu").eval()
        finally:
            logging.disable(disabled)
        # Overwrites open_clip_config.json with model_cfg + preprocess_cfg, as push_to_hf_hub does.
        save_for_hf(model, _NoTokenizerFiles(), dict(TINY_OPENCLIP_CONFIG), staging, safe_serialization="both")
        for path in sorted(staging.iterdir(), key=lambda p: p.name == CONFIG_NAME):
            path.replace(folder / path.name)
    return folder


def make_tiny_openclip_file(folder: Path) -> tuple[Path, str]:
    """The same tiny model as one safetensors file and its architecture name, registered with
    open_clip in this process: ``(weights file, model name)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{TINY_OPENCLIP_NAME}.json"
    weights = folder / f"{TINY_OPENCLIP_NAME}.safetensors"
    if not weights.exists():
        with tempfile.TemporaryDirectory(dir=folder, prefix=".hub-") as scratch:
            hub = make_tiny_openclip(Path(scratch) / "hub")
            shutil.copyfile(hub / "open_clip_model.safetensors", folder / ".weights.partial")
        (folder / ".weights.partial").replace(weights)
    if not config.exists():
        config.write_text(json.dumps(TINY_OPENCLIP_CONFIG, indent=4) + "\n", encoding="utf-8")
    register_tiny_openclip(folder)
    return weights, TINY_OPENCLIP_NAME


def register_tiny_openclip(folder: Path) -> None:
    """Make ``TINY_OPENCLIP_NAME`` one of ``open_clip.list_models()`` (from ``folder/<name>.json``)."""
    import open_clip

    if TINY_OPENCLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(Path(folder) / f"{TINY_OPENCLIP_NAME}.json")
