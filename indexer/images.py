"""Safe, fast image decoding: every failure becomes an ``ImageError`` with a one-line reason.

Large JPEGs are decoded with DCT scaling (``Image.draft``) straight to about the working size,
which is several times cheaper than a full decode followed by a resize.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from indexer.errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
WORKING_SIDE = 1024  # longest side the experts see; OCR needs more than the 300 px detectors
DRAFT_MIN_SIDE = 768  # JPEG DCT scaling stops before the longest side drops below this
MAX_PIXELS = 100_000_000  # larger images are refused before decoding (decompression-bomb guard)
MAX_FILE_BYTES = 200 * 1024 * 1024
EXIF_ORIENTATION = 0x0112

ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass
class LoadedImage:
    """A decoded image ready for the experts: RGB uint8, longest side at most ``WORKING_SIDE``."""

    rgb: np.ndarray
    width: int  # original size, before any scaling
    height: int
    content_hash: str
    format: str = ""  # as Pillow names it: JPEG, PNG, ...


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def load_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read a file (or bytes) into a ``LoadedImage``; raise ``ImageError`` with a short reason on failure."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = _read_file(Path(source))
    if not data:
        raise ImageError("empty file (0 bytes)")
    return decode_image(data, max_pixels=max_pixels)


def _read_file(path: Path) -> bytes:
    try:
        return read_image_file(path)
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(f"cannot read file: {e.strerror or e}") from None


def _not_a_regular_file(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read (a FIFO would block, a device never ends), or None."""
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
    )
    return f"not a regular file ({kind})"


def read_image_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``ImageError`` for anything else.
    Opened without blocking (a FIFO named photo.jpg must not hang the run) and checked on the
    open descriptor, and read no further than the limit (a file may grow, a device never ends)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        reason = _not_a_regular_file(info.st_mode)
        if reason:
            raise ImageError(reason)
        if info.st_size > max_bytes:
            raise ImageError(_too_large(info.st_size, max_bytes))
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(_too_large(len(data), max_bytes))
    return data


def _too_large(size: int, max_bytes: int) -> str:
    return f"file too large ({size / 2**20:.0f} MiB > {max_bytes / 2**20:.0f} MiB)"


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    digest = content_hash(data)
    try:
        with warnings.catch_warnings():
            # Our own header check below is the size limit; Pillow's warning fires lower (89.5 MP).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            image_format = image.format or ""
            if width <= 0 or height <= 0:
                raise ImageError("image has no pixels")
            if width * height > max_pixels:
                raise ImageError(
                    f"image too large ({width}x{height} = {width * height / 1e6:.0f} MP > {max_pixels / 1e6:.0f} MP "
                    "limit)"
                )
            if image.format == "JPEG":
                # Decodes at 1/2, 1/4 or 1/8 scale: 4032x3024 -> 1008x756, 1600x1200 -> 800x600.
                scale = DRAFT_MIN_SIDE / max(width, height)
                image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
            image.load()
            if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
            image = ImageOps.exif_transpose(image)
            if max(image.size) > WORKING_SIDE and image.mode != "RGB":
                # Odd modes shrink before conversion, so a huge 16-bit scan never becomes a float array
                # (without reducing_gap: Pillow's reduce() step refuses 16-bit modes).
                image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BILINEAR, reducing_gap=None)
            rgb = to_rgb(image)
            if max(rgb.shape[:2]) > WORKING_SIDE:  # OpenCV's area filter: twice as fast as Pillow's here
                scale = WORKING_SIDE / max(rgb.shape[:2])
                size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise ImageError("image too large (decompression-bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e).lower()
        if "truncated" in msg or isinstance(e, EOFError):
            raise ImageError("truncated image data") from None
        raise ImageError(f"corrupt image data ({str(e)[:80]})") from None
    return LoadedImage(rgb=rgb, width=width, height=height, content_hash=digest, format=image_format)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> HxWx3 uint8 RGB; alpha is composited on white, 16-bit and float are rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        gray = scaled.clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
