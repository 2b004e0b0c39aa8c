"""Models loaded from a user's local checkpoint folder through transformers (CLIP, SigLIP, E5-V,
OWLv2, Mask2Former): the folder check, a fingerprint the index records, device and precision.

A checkpoint folder is what transformers' ``save_pretrained`` writes and what a published model
downloads as: ``config.json``, ``*.safetensors``, preprocessor and tokenizer files. Nothing is
downloaded here.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from indexer.errors import MoairError

FINGERPRINT_BYTES = 2**20  # read from each end of each weight file


def checkpoint_folder(checkpoint: str | Path | None, what: str) -> Path:
    """The checkpoint folder for ``what`` (e.g. "the clip backbone"), checked to hold a config."""
    if not checkpoint:
        raise MoairError(f"{what} needs a checkpoint folder (--checkpoint DIR); nothing is downloaded")
    folder = Path(checkpoint).expanduser().absolute()
    if not (folder / "config.json").is_file():
        raise MoairError(f"{folder} is not a checkpoint folder (no config.json); give the folder save_pretrained wrote")
    return folder


def fingerprint(folder: Path) -> str:
    """A short digest of a checkpoint folder: its config and, per weight file, its size and first and
    last MiB (enough to tell checkpoints apart without reading gigabytes)."""
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return fingerprint_files((folder / "config.json").read_bytes(), weights)


def fingerprint_files(config: bytes, weight_files: Iterable[Path]) -> str:
    """``fingerprint``'s digest of a config (its bytes) and weight files, in the order given; for
    checkpoints laid out otherwise than transformers' folders (e.g. open_clip's)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(config)
    for weights in weight_files:
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with open(weights, "rb") as f:
            digest.update(f.read(FINGERPRINT_BYTES))
            f.seek(max(0, size - FINGERPRINT_BYTES))
            digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def torch_device(device: str) -> str:
    """``auto`` is CUDA when there is a GPU, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MoairError(f"--device {device}: no CUDA GPU is visible to torch (torch {torch.__version__})")
    return device


def torch_dtype(dtype: str, device: str):
    """``auto`` is float16 on a GPU and float32 on the CPU."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise MoairError(f"--dtype must be auto, float32, float16 or bfloat16, not {dtype!r}") from None


def load_pretrained(folder: Path, model_class: str, device: str, dtype: str) -> tuple[Any, Any, str]:
    """(model in eval mode on its device, processor, device) from a checkpoint folder, through
    transformers' ``model_class`` (e.g. "AutoModel") and ``AutoProcessor``; clear errors."""
    try:
        import transformers
        from transformers.utils import logging as transformers_logging
    except ImportError as e:
        raise MoairError(
            f"checkpoint models need torch and transformers ({e}); pip install 'moair[checkpoints]'"
        ) from None
    transformers_logging.disable_progress_bar()  # a load bar per model would clutter moair's own output
    transformers_logging.set_verbosity_error()
    device = torch_device(device)
    try:
        # The PIL image processors (transformers 4's default), not the torchvision ones transformers 5
        # picks when torchvision is installed: the same image then gives the same vector either way.
        pil = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {}
        processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True, **pil)
        model = getattr(transformers, model_class).from_pretrained(
            folder, local_files_only=True, dtype=torch_dtype(dtype, device)
        )
    except (OSError, ValueError, KeyError) as e:
        raise MoairError(f"cannot load the checkpoint in {folder}: {str(e).splitlines()[0][:300]}") from None
    return model.to(device).eval(), processor, device


class CheckpointModel:
    """Base of the plug-ins built from a checkpoint folder (backbones and experts): loads the model
    and its processor, keeps the folder's fingerprint for the plug-in's version, says what the index
    records to build it again (``options``), and holds a lock so one shared copy of a large model
    runs one forward at a time."""

    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "safetensors")
    needs_checkpoint: ClassVar[bool] = True
    extra: ClassVar[str] = "checkpoints"

    def __init__(self, checkpoint: str | Path | None, what: str, model_class: str, device: str, dtype: str) -> None:
        folder = checkpoint_folder(checkpoint, what)
        self.checkpoint = str(folder)
        self.fingerprint = fingerprint(folder)
        self.model, self.processor, self.device = load_pretrained(folder, model_class, device, dtype)
        import torch  # present: load_pretrained succeeded

        self._torch = torch
        self._lock = threading.Lock()

    def options(self) -> dict[str, str]:
        return {"checkpoint": self.checkpoint}
