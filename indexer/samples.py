"""The bundled sample collection: real photos that install from the package registries.

Sources: scikit-image's ``data`` module, scikit-learn's sample images, matplotlib's sample data,
and the photos in Debian's ``darknet`` package (fetched with ``apt-get download`` and unpacked
into the cache, never installed). Nothing is committed to the repository; everything is copied
into a cache folder on first use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "page",
    "text",
    "hubble_deep_field",
    "moon",
]
DARKNET_PHOTOS = ["dog", "horses", "person", "giraffe", "kite", "eagle", "scream"]
DEFAULT_CACHE = Path.home() / ".cache" / "moair"
SAMPLE_FILES = [
    *(f"skimage-{name}.png" for name in SKIMAGE_PHOTOS),
    "sklearn-china.jpg",
    "sklearn-flower.jpg",
    "matplotlib-grace_hopper.jpg",
    *(f"darknet-{name}.jpg" for name in DARKNET_PHOTOS),
]


def _skimage(dest: Path) -> list[Path]:
    import skimage.data

    out = []
    for name in SKIMAGE_PHOTOS:
        target = dest / f"skimage-{name}.png"
        if not target.exists():
            array = np.asarray(getattr(skimage.data, name)())
            Image.fromarray(array).save(target)
        out.append(target)
    return out


def _sklearn(dest: Path) -> list[Path]:
    import sklearn.datasets

    source = Path(sklearn.datasets.__file__).parent / "images"
    out = []
    for name in ("china.jpg", "flower.jpg"):
        target = dest / f"sklearn-{name}"
        if not target.exists():
            shutil.copyfile(source / name, target)
        out.append(target)
    return out


def _matplotlib(dest: Path) -> list[Path]:
    import matplotlib.cbook

    target = dest / "matplotlib-grace_hopper.jpg"
    if not target.exists():
        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            target.write_bytes(f.read())
    return [target]


def _darknet(dest: Path) -> list[Path]:
    targets = [dest / f"darknet-{name}.jpg" for name in DARKNET_PHOTOS]
    if all(t.exists() for t in targets):
        return targets
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = unpack_debian_package("darknet", Path(tmp))
        for name, target in zip(DARKNET_PHOTOS, targets):
            shutil.copyfile(unpacked / "usr/share/darknet/data" / f"{name}.jpg", target)
    return targets


def unpack_debian_package(package: str, dest: Path) -> Path:
    """Download Debian's ``package`` (``apt-get download``: nothing is installed) and unpack it
    under ``dest``; returns the folder holding its file tree."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError(f"apt-get/dpkg-deb not found (Debian/Ubuntu needed for the {package} package)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0 and os.geteuid() == 0:  # stale or missing package lists: root may refresh them
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            result = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {package} failed: {result.stderr.strip()[-200:]}")
        unpacked = dest / package
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
    return unpacked


def sample_photos(cache: Path = DEFAULT_CACHE) -> tuple[Path, list[str]]:
    """Copy the sample photos into ``cache/samples`` (once) and return (folder, warnings).

    A source that cannot be had (no apt on this system, say) is a warning; the rest still come."""
    dest = Path(cache).expanduser() / "samples"
    dest.mkdir(parents=True, exist_ok=True)
    warnings = []
    for name, source in (
        ("scikit-image", _skimage),
        ("scikit-learn", _sklearn),
        ("matplotlib", _matplotlib),
        ("darknet", _darknet),
    ):
        try:
            source(dest)
        except Exception as e:  # one missing source must not stop the demo
            warnings.append(f"{name} sample photos unavailable: {e}")
    return dest, warnings
