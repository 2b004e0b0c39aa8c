"""Start-up model checks: every expert and encoder is loaded and given a small image (or text)
once before the first file is read, so a broken install stops the run with one line that names
the model, its packages and the fix, instead of failing on every photo and being remembered as
bad photos. ``moair doctor`` and ``GET /health?detail=true`` show the same checks.

Each plug-in names the distributions it stands on in ``packages``; the fix compares their installed
versions with the ranges moair declares (``pyproject.toml``), so a release outside them (OpenCV 5.1,
which removed the TensorFlow importer the COCO detector needs) is named with the range to install.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import shlex
import subprocess
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PIL import Image, ImageDraw
from pydantic import BaseModel

from indexer.errors import MoairError
from indexer.images import LoadedImage, decode_image

PluginKind = Literal["expert", "text embedder", "backbone", "generator"]
LOCKED_INSTALL = "in a moair checkout, `make demo` (or `make test`) installs the tested versions from requirements/"
DEBIAN_INSTALL = "in a moair checkout, `make demo` (or `make test`) installs them"


class ModelCheck(BaseModel):
    """Whether one model loads and runs, with the versions of the packages it stands on."""

    kind: PluginKind
    name: str
    packages: dict[str, str]  # distribution -> installed version ("" when not installed)
    ok: bool | None  # None: not checked (it needs a checkpoint, or loading it was not asked for)
    detail: str = ""  # the error, or why it was not checked
    fix: str = ""  # what to do about a failure
    seconds: float = 0.0

    def message(self) -> str:
        """One line for the user: the model, the error, the packages and the fix."""
        installed = ", ".join(f"{name} {version or 'not installed'}" for name, version in self.packages.items())
        line = f"the {self.name} {self.kind} cannot run: {self.detail}"
        if installed:
            line += f" ({installed})"
        return f"{line}. Fix: {self.fix}" if self.fix else line


class ModelError(MoairError):
    """A model cannot load or run: an install problem, not a property of any file."""

    def __init__(self, check: ModelCheck) -> None:
        super().__init__(check.message())
        self.check = check


def installed(packages: Iterable[str]) -> dict[str, str]:
    """Distribution -> installed version ("" when it is not installed)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def installed_debian(packages: Iterable[str]) -> dict[str, str]:
    """Debian package -> installed version ("" when it is not installed, or this is no Debian)."""
    versions = {}
    for name in packages:
        try:
            query = subprocess.run(
                ["dpkg-query", "-W", "-f=${Status} ${Version}", name], capture_output=True, text=True, timeout=30
            )
            status = query.stdout.split()
            versions[name] = (
                status[-1] if query.returncode == 0 and "installed" in status[:3] and len(status) == 4 else ""
            )
        except (OSError, subprocess.SubprocessError):
            versions[name] = ""
    return versions


def plugin_packages(plugin: object) -> dict[str, str]:
    """The installed versions of what a plug-in stands on: its Python distributions and its
    Debian packages (named "name (Debian)")."""
    versions = installed(getattr(plugin, "packages", ()))
    versions.update(
        {f"{name} (Debian)": v for name, v in installed_debian(getattr(plugin, "debian_packages", ())).items()}
    )
    return versions


@functools.cache
def declared_requirements() -> dict[str, list[Requirement]]:
    """moair's own requirements (every extra included), by canonical distribution name."""
    try:
        lines = importlib.metadata.requires("moair") or []
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
        lines = []
    found: dict[str, list[Requirement]] = {}
    for line in lines:
        requirement = Requirement(line)
        if requirement.specifier or requirement.marker:
            found.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return found


def fix_for(packages: dict[str, str], extra: str = "", tested: bool = True) -> str:
    """What to install: the Debian packages missing, the Python packages missing (through the
    plug-in's ``extra``, when it has one) or outside moair's declared ranges, or, when every
    version is in range, the tested set."""
    debian = [
        name.removesuffix(" (Debian)")
        for name, version in packages.items()
        if name.endswith(" (Debian)") and not version
    ]
    if debian:
        command = (
            f"apt-get install {' '.join(debian)} (Debian, Ubuntu; other systems: install them from their own packages)"
        )
        return f"{command}; {DEBIAN_INSTALL}" if tested else command
    wanted = []
    for name, version in packages.items():
        if name.endswith(" (Debian)"):
            continue
        ranges = [r.specifier for r in declared_requirements().get(canonicalize_name(name), []) if r.specifier]
        outside = [spec for spec in ranges if version and not spec.contains(version, prereleases=True)]
        if not version:
            wanted.append(f"moair[{extra}]" if extra else f"{name}{ranges[0] if ranges else ''}")
        elif outside:
            wanted.append(f"{name}{outside[0]}")
    if wanted:
        command = f"pip install {' '.join(shlex.quote(w) for w in dict.fromkeys(wanted))}"
        return f"{command} ({LOCKED_INSTALL})" if tested else command
    return f"reinstall the tested versions: {LOCKED_INSTALL}"


def _describe(error: BaseException) -> str:
    """The error in one line; an unexpected one with its type and the function that raised it."""
    text = " ".join(str(error).split())[:300]
    if isinstance(error, MoairError):
        return text
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    origin = f" (in {where[0].name})" if where else ""
    return f"{type(error).__name__}: {text}{origin}" if text else f"{type(error).__name__}{origin}"


def check(kind: PluginKind, name: str, plugin: object, run: Callable[[], object]) -> ModelCheck:
    """Run ``run`` (load and use one model, the plug-in class ``plugin``) and say how it went."""
    started = time.perf_counter()
    try:
        run()
    except Exception as e:
        return failed_check(kind, name, plugin, e, seconds=time.perf_counter() - started)
    return ModelCheck(
        kind=kind, name=name, packages=plugin_packages(plugin), ok=True, seconds=time.perf_counter() - started
    )


def failed_check(kind: PluginKind, name: str, plugin: object, error: Exception, seconds: float = 0.0) -> ModelCheck:
    """The check of a plug-in that raised ``error``: what went wrong, its packages, the fix."""
    versions = plugin_packages(plugin)
    fix = fix_for(versions, getattr(plugin, "extra", ""))
    if kind == "expert" and getattr(plugin, "debian_packages", ()):
        fix += f"; or build a new index without it: moair index ... --without-expert {name}"
    return ModelCheck(
        kind=kind, name=name, packages=versions, ok=False, detail=_describe(error), fix=fix, seconds=seconds
    )


def not_checked(kind: PluginKind, name: str, plugin: object, why: str) -> ModelCheck:
    """An optional model that was not loaded: ``why``, or that its packages are not installed."""
    versions = plugin_packages(plugin)
    missing = [p for p, v in versions.items() if not v]
    if missing:
        fix = fix_for(versions, getattr(plugin, "extra", ""), tested=False)
        why = f"optional, not installed ({', '.join(missing)}): {fix}"
    return ModelCheck(kind=kind, name=name, packages=versions, ok=None, detail=why)


def optional_missing(plugin: object) -> bool:
    """Whether a plug-in of an extra lacks some of its packages (so it is not part of this install)."""
    return bool(getattr(plugin, "extra", "")) and not all(installed(getattr(plugin, "packages", ())).values())


def vectors(rows: np.ndarray, count: int, dim: int) -> None:
    """An encoder's output must be ``count`` finite unit rows of ``dim``."""
    rows = np.asarray(rows)
    if rows.shape != (count, dim):
        raise MoairError(f"gave vectors of shape {rows.shape}, expected ({count}, {dim})")
    if not np.isfinite(rows).all():
        raise MoairError("gave vectors that are not finite (NaN or infinity)")
    norms = np.linalg.norm(rows, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-2):
        raise MoairError(f"gave vectors that are not unit length (norms {norms.round(3).tolist()})")


@functools.cache
def smoke_image() -> LoadedImage:
    """A small image with shapes, colours and a printed word, encoded and decoded like a file."""
    image = Image.new("RGB", (192, 128), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 60, 80, 120), fill=(200, 40, 40))
    draw.ellipse((110, 50, 180, 120), fill=(40, 90, 200))
    draw.text((12, 12), "MOAIR CHECK", fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return decode_image(buffer.getvalue())


def first_failure(checks: Iterable[ModelCheck]) -> None:
    """Raise the first failed check as a ``ModelError``."""
    for result in checks:
        if result.ok is False:
            raise ModelError(result)
