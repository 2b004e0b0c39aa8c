"""Visual expert from a local open_clip model (OpenCLIP: CLIP, SigLIP, EVA-CLIP, MetaCLIP, DFN and
the other architectures of ``open_clip.list_models()``), loaded by open_clip itself.

Its image and text towers share one space, so a text query reaches the visual block directly
(cross-modal search), beside the verbalized caption and OCR blocks. The user gives one of:

* a folder in open_clip's Hugging Face hub layout, as published open_clip models download
  (``open_clip_config.json`` with the architecture and the preprocessing,
  ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``, and for models with a
  transformers tokenizer, e.g. SigLIP, its files): ``--checkpoint DIR``;
* one weights file (``.safetensors``, ``.pt``, ``.pth``, ``.bin``: a state dict or an open_clip
  training checkpoint) and the open_clip architecture it was trained as (``model_name``, e.g.
  ``ViT-B-32``; OpenAI's own weights are ``ViT-B-32-quickgelu``): ``--checkpoint FILE --model-name
  NAME``. The preprocessing is then the one all of open_clip's published weights of that
  architecture share (e.g. SigLIP's), else open_clip's default.

Nothing is downloaded: the Hugging Face hub is switched to offline while open_clip loads (an
architecture whose tokenizer or text tower open_clip would fetch from the hub loads only from the
folder's files or the local hub cache). The index records the path (and model name) and a
fingerprint of the config and weights, and refuses to search with a different model.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from indexer.checkpoints import fingerprint_files, torch_device, torch_dtype
from indexer.encoders import BACKBONES
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.errors import MoairError
from indexer.experts.base import Analysis
from indexer.mixture import normalise_rows

WHAT = "the openclip backbone"
CONFIG_NAME = "open_clip_config.json"  # open_clip's hub layout
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")  # the files open_clip looks for in a folder
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
# open_clip's precision for each torch dtype: a plain cast of the whole model, as transformers' dtype is.
PRECISIONS = {"float32": "fp32", "float16": "pure_fp16", "bfloat16": "pure_bf16"}
# Chance levels are CHANCE_LEVELS' "siglip" for the sigmoid-trained models (those with a logit
# bias), "clip" for the softmax-trained rest.


def _import_open_clip():
    try:
        import open_clip
    except (ImportError, RuntimeError, OSError) as e:  # torchvision built for another torch raises RuntimeError
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise MoairError(
            f"{WHAT} needs open_clip and a torchvision built for this torch ({first}); pip install 'moair[openclip]'"
        ) from None
    return open_clip


@contextlib.contextmanager
def _hub_offline():
    """The Hugging Face hub offline while open_clip loads: files come from the folder or the local
    cache, never from the network (open_clip reads a hub tokenizer or text tower by name)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _first_lines(error: BaseException, lines: int = 1, limit: int = 300) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines()[:lines] if line.strip())
    return (text or type(error).__name__)[:limit]


def _architecture(open_clip, model_name: str) -> str:
    """``model_name`` as open_clip knows it, or a clear error naming close ones."""
    name = model_name.strip().replace("/", "-")  # open_clip's own cleaning ("ViT-B/32" -> "ViT-B-32")
    known = open_clip.list_models()
    if name in known:
        return name
    by_case = {k.lower(): k for k in known}
    if name.lower() in by_case:  # "vit-b-32": open_clip's names are case-sensitive, the meaning is plain
        return by_case[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(by_case), n=5, cutoff=0.5)
    hint = f"; close ones: {', '.join(by_case[c] for c in close)}" if close else ""
    raise MoairError(
        f"--model-name {model_name!r} is not an open_clip architecture{hint} (open_clip.list_models() lists all "
        f"{len(known)}); or give a folder with open_clip_config.json"
    )


def _published_preprocessing(open_clip, name: str) -> dict:
    """The preprocessing every published weight of architecture ``name`` shares (open_clip's
    pretrained table: e.g. SigLIP's mean 0.5 and squash resize), as keyword arguments of
    ``create_model_from_pretrained``; nothing where they differ or there are none (open_clip's
    defaults then)."""
    configs = [open_clip.get_pretrained_cfg(name, tag) for tag in open_clip.list_pretrained_tags_by_model(name)]
    shared = {}
    for key in PREPROCESS_KEYS:
        values = {json.dumps(c.get(key)) for c in configs}
        if configs and len(values) == 1 and configs[0].get(key) is not None:
            shared[f"image_{key}"] = configs[0][key]
    return shared


@BACKBONES.register("openclip")
class OpenClipBackbone:
    """An open_clip model (a folder in open_clip's hub layout, or a weights file + ``model_name``)."""

    name: ClassVar[str] = "openclip"
    packages: ClassVar[tuple[str, ...]] = ("torch", "torchvision", "open-clip-torch", "safetensors")
    needs_checkpoint: ClassVar[bool] = True
    extra: ClassVar[str] = "openclip"
    cross_modal: ClassVar[bool] = True

    def __init__(
        self, checkpoint: str | None = None, model_name: str | None = None, device: str = "auto", dtype: str = "auto"
    ) -> None:
        if not checkpoint:
            raise MoairError(
                f"{WHAT} needs a checkpoint: an open_clip folder (--checkpoint DIR) or a weights file and its "
                "architecture (--checkpoint FILE --model-name ViT-B-32); nothing is downloaded"
            )
        path = Path(checkpoint).expanduser().absolute()
        if not path.exists():
            raise MoairError(f"{path} does not exist; {WHAT} needs a local open_clip folder or weights file")
        model_name = model_name or None
        open_clip = _import_open_clip()
        if path.is_dir():
            identifier, pretrained, config, weights = self._folder(path, model_name)
            extra: dict = {}
        else:
            if not model_name:
                raise MoairError(
                    f"{path} is a single weights file: say which open_clip architecture it holds "
                    "(--model-name, e.g. ViT-B-32; open_clip.list_models() lists them)"
                )
            identifier = _architecture(open_clip, model_name)
            text_cfg = (open_clip.get_model_config(identifier) or {}).get("text_cfg", {})
            if "siglip" in identifier.lower() and not text_cfg.get("hf_tokenizer_name"):
                # open_clip would fetch this tokenizer's vocabulary from storage.googleapis.com
                raise MoairError(f"{identifier} names no tokenizer files; give the model's open_clip folder instead")
            pretrained, weights, extra = str(path), [path], _published_preprocessing(open_clip, identifier)
            spec = {"model_name": identifier, "model_cfg": open_clip.get_model_config(identifier), "preprocess": extra}
            config = json.dumps(spec, sort_keys=True).encode()
        self.checkpoint = str(path)
        self.model_name = identifier if pretrained else None
        self.fingerprint = fingerprint_files(config, weights)

        import torch  # present: open_clip imported

        self._torch = torch
        self._lock = threading.Lock()
        self.device = torch_device(device)
        dtype_name = str(torch_dtype(dtype, self.device)).removeprefix("torch.")
        precision = PRECISIONS[dtype_name]
        self._input_dtype = open_clip.get_input_dtype(precision) or torch.float32
        self.model, self.preprocess, self.tokenizer = self._load(
            open_clip, identifier, pretrained, path, precision, extra
        )
        self.family = "siglip" if getattr(self.model, "logit_bias", None) is not None else "clip"
        self.dim = int(self._text_features(["a photo"]).shape[1])
        self.version = f"openclip-{self.fingerprint}"
        chance = CHANCE_LEVELS[self.family]
        self.unrelated_similarity, self.unrelated_text_similarity = chance.similarity, chance.text_similarity

    @staticmethod
    def _folder(folder: Path, model_name: str | None) -> tuple[str, None, bytes, list[Path]]:
        """(open_clip's identifier, no separate weights, config bytes, weight files) of a hub-layout folder."""
        config = folder / CONFIG_NAME
        if not config.is_file():
            if (folder / "config.json").is_file():
                raise MoairError(
                    f"{folder} is a transformers checkpoint (config.json, no {CONFIG_NAME}); use --backbone clip for it"
                )
            raise MoairError(
                f"{folder} is not an open_clip folder (no {CONFIG_NAME}); give the folder of a published "
                "open_clip model, or a weights file with --model-name"
            )
        if model_name:
            raise MoairError(
                f"{folder} names its own architecture in {CONFIG_NAME}; --model-name is for a single weights file"
            )
        weights = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)})
        if not weights:
            raise MoairError(
                f"{folder} has {CONFIG_NAME} but no weights (open_clip_model.safetensors, open_clip_pytorch_model.bin)"
            )
        return f"local-dir:{folder}", None, config.read_bytes(), weights

    def _load(self, open_clip, identifier: str, pretrained: str | None, path: Path, precision: str, extra: dict):
        """(model in eval mode, image preprocessing, tokenizer) through open_clip's own loaders."""
        if pretrained:
            where, hint = f"the {identifier} architecture", "give the architecture they were trained as (--model-name)"
        else:
            where, hint = f"the architecture in {path / CONFIG_NAME}", "the folder mixes files of different models"
        try:
            with _hub_offline():
                model, preprocess = open_clip.create_model_from_pretrained(
                    identifier, pretrained=pretrained, precision=precision, device=self.device, **extra
                )
                tokenizer = open_clip.get_tokenizer(identifier)
        except (RuntimeError, AssertionError) as e:
            # torch's load_state_dict (missing / unexpected keys, size mismatches) and open_clip's
            # position-embedding resize ("pos_embed width changed!") say the weights are another model's
            if isinstance(e, AssertionError) or "state_dict" in str(e):
                raise MoairError(f"the weights in {path} do not fit {where} ({_first_lines(e, 3)}); {hint}") from None
            raise MoairError(f"cannot load the open_clip model {path}: {_first_lines(e)}") from None
        except Exception as e:  # noqa: BLE001  (json, safetensors, pickle, hub-cache and tokenizer errors)
            hub = type(e).__name__ in ("OfflineModeIsEnabled", "LocalEntryNotFoundError")
            if hub or "huggingface.co" in str(e) or "offline" in str(e).lower():
                raise MoairError(
                    f"{path}: open_clip wants files of this model from the Hugging Face hub (tokenizer or text "
                    f"tower) that are not on this machine, and nothing is downloaded ({_first_lines(e)}); give "
                    "the model's whole open_clip folder as published (with its tokenizer files)"
                ) from None
            raise MoairError(f"cannot load the open_clip model {path}: {_first_lines(e)}") from None
        return model.eval(), preprocess, tokenizer

    def options(self) -> dict[str, str]:
        """What the index records to build this backbone again."""
        recorded = {"checkpoint": self.checkpoint}
        if self.model_name:
            recorded["model_name"] = self.model_name
        return recorded

    def _text_features(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._torch.inference_mode():
            return normalise_rows(self.model.encode_text(tokens).float().cpu().numpy())

    def embed(self, analyses: Sequence[Analysis]) -> np.ndarray:
        from PIL import Image

        pixels = self._torch.stack([self.preprocess(Image.fromarray(a.image.rgb)) for a in analyses])
        pixels = pixels.to(device=self.device, dtype=self._input_dtype)
        with self._lock, self._torch.inference_mode():
            return normalise_rows(self.model.encode_image(pixels).float().cpu().numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text queries into the image space."""
        with self._lock:
            return self._text_features(texts)
