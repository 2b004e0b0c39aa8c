"""Shared fixtures: the real sample photos and one index of them, built once per test session.

Models are loaded once per process (the loaders in ``indexer.packaged_models`` are memoised),
so every test that opens an engine reuses them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from indexer.samples import sample_photos  # noqa: E402
from retriever import Engine  # noqa: E402


@pytest.fixture(scope="session")
def samples() -> Path:
    """The bundled sample photos; every source must be available in the test environment."""
    folder, warnings = sample_photos()
    assert warnings == [], warnings
    return folder


@pytest.fixture(scope="session")
def photo(samples):
    """Path of a sample photo by short name, e.g. ``photo("dog")`` -> darknet-dog.jpg."""

    def find(name: str) -> Path:
        matches = [p for p in samples.iterdir() if p.stem.split("-", 1)[1] == name]
        assert len(matches) == 1, f"no single sample photo named {name}"
        return matches[0]

    return find


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, samples) -> Path:
    """An index of all sample photos, built once; tests must only read it."""
    path = tmp_path_factory.mktemp("indexes") / "samples.moair"
    with Engine.open(path, create=True) as engine:
        report = engine.add([samples])
        assert report.skipped == [] and report.failed == []
    return path


@pytest.fixture(scope="session")
def engine(sample_index):
    with Engine.open(sample_index) as opened:
        yield opened


@pytest.fixture
def photo_dir(tmp_path, samples):
    """A fresh folder with a copy of a few sample photos, for tests that change the collection."""

    def make(*names: str) -> Path:
        folder = tmp_path / "photos"
        folder.mkdir(exist_ok=True)
        for name in names:
            source = next(p for p in samples.iterdir() if p.stem.split("-", 1)[1] == name)
            shutil.copy2(source, folder / source.name)
        return folder

    return make


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIP checkpoint in the real Hugging Face format (see tests/tiny_models.py)."""
    from tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> Path:
    """A tiny random SigLIP checkpoint in the real Hugging Face format (see tests/tiny_models.py)."""
    from tiny_models import make_tiny_siglip

    return make_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


@pytest.fixture(scope="session")
def tiny_llava_next(tmp_path_factory) -> Path:
    """A tiny random LLaVA-NeXT (E5-V's architecture) checkpoint in the real Hugging Face format.

    See tests/tiny_models.py."""
    from tiny_models import make_tiny_llava_next

    return make_tiny_llava_next(tmp_path_factory.mktemp("tiny-llava-next"))


@pytest.fixture(scope="session")
def tiny_owlv2(tmp_path_factory) -> Path:
    """A tiny random OWLv2 (open-vocabulary detector) checkpoint in the real Hugging Face format.

    See tests/tiny_models.py."""
    from tiny_models import make_tiny_owlv2

    return make_tiny_owlv2(tmp_path_factory.mktemp("tiny-owlv2"))


@pytest.fixture(scope="session")
def tiny_mask2former(tmp_path_factory) -> Path:
    """A tiny random Mask2Former (Swin, COCO panoptic labels) checkpoint in the real Hugging Face format.

    See tests/tiny_models.py."""
    from tiny_models import make_tiny_mask2former

    return make_tiny_mask2former(tmp_path_factory.mktemp("tiny-mask2former"))


@pytest.fixture(scope="session")
def tiny_moai(tmp_path_factory) -> Path:
    """A tiny random MoAI checkpoint in the published BK-Lee/MoAI-7B layout (see tests/tiny_moai.py)."""
    from tiny_moai import make_tiny_moai

    return make_tiny_moai(tmp_path_factory.mktemp("tiny-moai"))


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory) -> Path:
    """A tiny random open_clip ViT in open_clip's hub layout (see tests/tiny_openclip.py); skips
    where the openclip extra is not installed."""
    pytest.importorskip("open_clip")
    from tiny_openclip import make_tiny_openclip

    return make_tiny_openclip(tmp_path_factory.mktemp("tiny-openclip") / "hub")
