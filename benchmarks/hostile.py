"""A hostile collection, made at run time beside real photos (never committed): every kind of file
a real library or an attacker puts in a photo folder, each with what moair must make of it.

``make_hostile_collection(folder, photos)`` writes it and returns the cases: a file that must be
indexed (an odd but valid image, an odd name) or skipped with a one-line reason that says the
given words. Used by tests/test_hostile_collection.py and benchmarks/bench_hostile.py.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MAX_FILE_BYTES = 200 * 2**20  # moair's limit (indexer.images.MAX_FILE_BYTES)


@dataclass
class HostileCase:
    path: Path
    kind: str  # what it is, for the benchmark's table
    indexed: bool  # True: must be indexed and found; False: skipped, with a reason saying ``says``
    says: str = ""
    content_of: Path | None = None  # an indexed copy: the photo whose bytes it holds


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _encoded(image: Image.Image, form: str, **options) -> bytes:
    data = io.BytesIO()
    image.save(data, form, **options)
    return data.getvalue()


def make_hostile_collection(folder: Path, photos: list[Path], seed: int = 15) -> list[HostileCase]:
    """Write the hostile files into ``folder`` (beside copies of ``photos``, which are cases too)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[HostileCase] = []

    def write(name: str, data: bytes, kind: str, indexed: bool, says: str = "") -> None:
        path = folder / name
        path.write_bytes(data)
        cases.append(HostileCase(path, kind, indexed, says))

    for photo in photos:
        shutil.copy(photo, folder / photo.name)
        cases.append(HostileCase(folder / photo.name, "real photo", True))
    jpegs = [p.read_bytes() for p in photos if p.suffix == ".jpg"]

    # bytes that are not an image
    for n in range(40):
        data = rng.choice(jpegs)
        write(f"truncated-{n}.jpg", data[: rng.randint(20, len(data) // 3)], "truncated JPEG", False, "")
    for n in range(40):
        write(
            f"noise-{n}.{rng.choice(['jpg', 'png', 'webp', 'gif', 'tif'])}",
            rng.randbytes(rng.randint(1, 50_000)),
            "random bytes",
            False,
            "",
        )
    for n in range(10):
        write(f"empty-{n}.jpg", b"", "empty file", False, "empty file")
    texts = [
        b"hello\n" * 50,
        b"<html><body>not a photo</body></html>",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        b"PK\x03\x04" + rng.randbytes(200),
        b"#!/bin/sh\nrm -rf /\n",
        b"\x7fELF" + rng.randbytes(300),
    ]
    for n in range(20):
        write(f"not-an-image-{n}.png", texts[n % len(texts)], "not an image", False, "not an image")
    for n in range(5):
        write(
            f"bomb-{n}.png",
            _png_header_only(100_001 + n, 100_001),
            "decompression bomb header",
            False,
            "decompression-bomb guard",
        )
    for n in range(5):
        write(f"zero-size-{n}.png", _png_header_only(0, 10 + n), "zero-size header", False, "")

    # things that are not regular files, or too large to read
    for n in range(5):
        os.mkfifo(folder / f"fifo-{n}.jpg")
        cases.append(HostileCase(folder / f"fifo-{n}.jpg", "FIFO", False, "not a regular file (a FIFO)"))
    for n, device in enumerate(["/dev/zero", "/dev/urandom", "/dev/null", "/dev/zero", "/dev/urandom"]):
        (folder / f"device-{n}.jpg").symlink_to(device)
        cases.append(
            HostileCase(folder / f"device-{n}.jpg", "link to a device", False, "not a regular file (a device)")
        )
    for n in range(10):
        (folder / f"dangling-{n}.jpg").symlink_to(folder / f"nowhere-{n}.jpg")
        cases.append(HostileCase(folder / f"dangling-{n}.jpg", "dangling link", False, "cannot read file"))
    for n in range(5):
        (folder / f"loop-{n}a.jpg").symlink_to(folder / f"loop-{n}b.jpg")
        (folder / f"loop-{n}b.jpg").symlink_to(folder / f"loop-{n}a.jpg")
        cases += [HostileCase(folder / f"loop-{n}{s}.jpg", "link loop", False, "cannot read file") for s in "ab"]
    for n in range(5):
        with open(folder / f"sparse-{n}.jpg", "wb") as f:
            f.truncate(MAX_FILE_BYTES * (2 + n))  # gigabytes that take no disk
        cases.append(HostileCase(folder / f"sparse-{n}.jpg", "sparse giant file", False, "file too large"))

    # valid images that are odd: tiny, thin, unusual modes and formats
    for n, size in enumerate(
        [(1, 1), (2, 2), (3, 7), (8, 8), (16, 16), (17, 17), (12, 40), (2000, 10), (10, 2000), (2000, 40)]
    ):
        noise = np.random.default_rng(n).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        write(f"tiny-{n}.png", _encoded(Image.fromarray(noise), "PNG"), "tiny or thin image", True)
    # each from another photo, so that each is a picture of its own
    smalls = [Image.open(p).convert("RGB").resize((320, 240)) for p in photos]
    modes = [
        ("cmyk.jpg", "CMYK", "JPEG"),
        ("palette.png", "P", "PNG"),
        ("grey-alpha.png", "LA", "PNG"),
        ("one-bit.png", "1", "PNG"),
        ("rgba.png", "RGBA", "PNG"),
        ("grey16.png", "I;16", "PNG"),
        ("float.tif", "F", "TIFF"),
        ("int32.tif", "I", "TIFF"),
        ("bitmap.bmp", "RGB", "BMP"),
        ("lossless.webp", "RGB", "WEBP"),
        ("animated.gif", "P", "GIF"),
        ("progressive.jpg", "RGB", "JPEG"),
        ("grey.jpg", "L", "JPEG"),
        ("wrong-suffix.png", "RGB", "JPEG"),
    ]
    for n, (name, mode, form) in enumerate(modes):
        image = smalls[n % len(smalls)].convert(mode)
        options = {"progressive": True} if name.startswith("progressive") else {}
        if name == "animated.gif":
            options = {"save_all": True, "append_images": [image.rotate(90)], "duration": 100}
        write(f"mode-{name}", _encoded(image, form, **options), "unusual mode or format", True)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate
    write(
        "exif-rotated.jpg",
        _encoded(smalls[len(modes) % len(smalls)], "JPEG", exif=exif),
        "unusual mode or format",
        True,
    )

    # odd names holding real photos
    odd_names = [os.fsdecode(b"caf\xe9-%d.jpg" % n) for n in range(5)] + [
        os.fsdecode(b"\xff\xfe%d.jpg" % n) for n in range(5)
    ]
    odd_names += [f"ansi-\x1b[31m{n}.jpg" for n in range(5)] + [f"tab\tnew\nline-{n}.jpg" for n in range(5)]
    odd_names += [("x" * (250 - len(str(n)))) + f"{n}.jpg" for n in range(3)] + [
        "사진-한글.jpg",
        "emoji-📷.jpg",
        " leading space.jpg",
    ]
    for n, name in enumerate(odd_names):
        source = photos[n % len(photos)]
        shutil.copy(source, folder / name)
        cases.append(HostileCase(folder / name, "odd file name", True, content_of=source))
    return cases
