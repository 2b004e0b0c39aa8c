"""Hangul OCR: Tesseract's Korean model (Debian's ``tesseract-ocr-kor``) reads the text regions
PP-OCR found but could not read.

PP-OCRv4's recogniser knows Latin and Chinese, not Hangul: on a Korean sign it returns an empty
line at confidence 0 or a low-confidence misreading. Those rejected regions are the script
detector: photos without them (almost all) cost nothing more, and for the others every rejected
region is straightened, scaled to ``LINE_HEIGHTS`` as it is and inverted, and stacked into one
image that one Tesseract process reads (``--psm 6``, a block of lines), so a menu of twenty lines
pays one start-up (about 0.15 s) rather than twenty. A reading is kept when it has at least two
Hangul syllables and Tesseract's mean word confidence reaches ``MIN_CONFIDENCE``: a texture that
PP-OCR took for text comes back empty or with low confidence.

Tesseract splits Korean into one-syllable "words" where the letters sit close (오 늘 의); syllables
closer than a third of the line height are joined again, so the line reads as it is written.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image, ImageOps

from indexer.errors import MoairError
from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.experts.ocr import MOAI_MIN_CONFIDENCE, PaddleOcr, TextRegion, read_regions, text_line

LANGUAGES = "kor"
# Tesseract's reading of a line changes with its scale (빵집 read right at 40 and 56 px, as 빠지 ㅇ at
# 48 and 64), so each region is read at two heights and the surer reading kept.
LINE_HEIGHTS = (40, 56)  # px, the region's box
GAP = 24  # px of white between stacked lines
MAX_REGIONS = 32
MIN_CONFIDENCE = 0.80
MIN_SYLLABLES = 2
TIMEOUT_SECONDS = 60
_SYLLABLE = re.compile(r"[\uac00-\ud7a3]")
_IDEOGRAPH = re.compile(r"[\u3400-\u9fff]")


_ASKING = threading.Lock()


def tesseract_languages() -> tuple[str, frozenset[str]]:
    """The ``tesseract`` program and the languages it has models for; ``MoairError`` when it lacks
    Korean. Asked once per process (the indexing workers all check at start)."""
    with _ASKING:
        return _ask_tesseract()


@functools.cache
def _ask_tesseract() -> tuple[str, frozenset[str]]:
    program = shutil.which("tesseract")
    if program is None:
        raise MoairError("Tesseract is not installed (no `tesseract` program on PATH)")
    listed = subprocess.run([program, "--list-langs"], capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    languages = frozenset(line.strip() for line in listed.stdout.splitlines()[1:] if line.strip())
    missing = [lang for lang in LANGUAGES.split("+") if lang not in languages]
    if missing:
        raise MoairError(
            f"Tesseract has no model for {', '.join(missing)} (its languages: {', '.join(sorted(languages)) or 'none'})"
        )
    return program, languages


def _line_images(crop: np.ndarray) -> list[Image.Image]:
    """The crop in grey at each of ``LINE_HEIGHTS``, as it is and inverted: the detector's box
    often reaches past a sign onto the photo, so which of ink and ground is darker is not known,
    and Tesseract reads only dark letters on a light ground well."""
    grey = Image.fromarray(np.ascontiguousarray(crop[:, :, ::-1])).convert("L")
    images = []
    for height in LINE_HEIGHTS:
        width = min(max(1, round(grey.width * height / max(1, grey.height))), 40 * height)
        line = ImageOps.autocontrast(grey.resize((width, height), Image.Resampling.LANCZOS))
        images += [line, ImageOps.invert(line)]
    return images


@dataclass
class _Word:
    line: int  # which stacked line image
    text: str
    confidence: float  # 0..1
    left: int
    right: int


def _read_stack(lines: list[Image.Image]) -> list[_Word]:
    """Tesseract's words on ``lines`` stacked into one image, each assigned to its line."""
    program, _ = tesseract_languages()
    tops = np.cumsum([GAP] + [line.height + GAP for line in lines])
    stack = Image.new("L", (max(line.width for line in lines) + 2 * GAP, int(tops[-1])), 255)
    for top, line in zip(tops, lines):
        stack.paste(line, (GAP, int(top)))
    png = io.BytesIO()
    stack.save(png, "PNG")
    run = subprocess.run(
        [program, "stdin", "stdout", "-l", LANGUAGES, "--psm", "6", "tsv"],
        input=png.getvalue(),
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},  # indexing already runs one image per core
    )
    if run.returncode != 0:
        error = run.stderr.decode(errors="replace").strip().splitlines()
        raise MoairError(f"Tesseract failed ({run.returncode}): {error[-1] if error else 'no message'}")
    words = []
    for row in run.stdout.decode(errors="replace").splitlines()[1:]:
        fields = row.split("\t")
        if len(fields) != 12 or fields[0] != "5" or not re.search(r"\w", fields[11]):
            continue  # not a word, or only a mark: the edge of a plate reads as "|"
        left, top, width, height = (int(v) for v in fields[6:10])
        line = int(np.searchsorted(tops, top + height / 2 + GAP / 2)) - 1  # the line whose band holds the word's middle
        if 0 <= line < len(lines):
            words.append(_Word(line, fields[11].strip(), float(fields[10]) / 100, left, left + width))
    return words


def _join(words: list[_Word], line_height: int) -> str:
    """The words of one line in order, one-syllable Hangul words that sit close joined again."""
    text = ""
    previous = None
    for word in sorted(words, key=lambda w: w.left):
        close = previous is not None and word.left - previous.right < line_height / 3
        syllables = (
            previous is not None and _SYLLABLE.fullmatch(previous.text[-1]) and _SYLLABLE.fullmatch(word.text[0])
        )
        single = previous is not None and (len(previous.text) == 1 or len(word.text) == 1)
        text += word.text if close and syllables and single else (" " if text else "") + word.text
        previous = word
    return text


@EXPERTS.register("hangul")
class HangulOcr:
    """Reads Korean writing in the regions PP-OCR could not read."""

    name: ClassVar[str] = "hangul"
    version: ClassVar[str] = "tesseract-kor/1"
    reads: ClassVar[tuple[str, ...]] = ("text",)
    writes: ClassVar[tuple[str, ...]] = ("text", "text_present")
    packages: ClassVar[tuple[str, ...]] = ("rapidocr-onnxruntime", "onnxruntime")
    debian_packages: ClassVar[tuple[str, ...]] = ("tesseract-ocr", "tesseract-ocr-kor")

    def __init__(self, min_confidence: float = MIN_CONFIDENCE) -> None:
        self.min_confidence = min_confidence
        self.paddle = PaddleOcr(min_confidence=MOAI_MIN_CONFIDENCE)

    def rereads(self, region: TextRegion) -> bool:
        """Whether ``region`` goes to Tesseract: PP-OCR could not read it, or read Chinese
        characters, which is what it makes of some Hangul (카페 24시 came back as 24人 at 0.92)."""
        return not self.paddle.keeps(region) or bool(_IDEOGRAPH.search(region.text))

    def run(self, analysis: Analysis) -> None:
        tesseract_languages()  # on every image, not only the first Korean sign: the start-up check sees it
        regions = read_regions(analysis)
        chosen = [r for r in regions if self.rereads(r)][:MAX_REGIONS]
        if not chosen:
            return
        images = [_line_images(r.crop) for r in chosen]
        stacked = [image for per_region in images for image in per_region]
        words = _read_stack(stacked)
        height, width = analysis.image.rgb.shape[:2]
        found = []
        first = 0
        for region, per_region in zip(chosen, images):
            readings = []
            for line in range(first, first + len(per_region)):
                kept = [w for w in words if w.line == line]
                text = _join(kept, stacked[line].height)
                score = float(np.mean([w.confidence for w in kept])) if kept else 0.0
                if len(_SYLLABLE.findall(text)) >= MIN_SYLLABLES and score >= self.min_confidence:
                    readings.append((score, text))
            first += len(per_region)
            if readings:
                score, text = max(readings)
                found.append(text_line(region, text, score, width, height))
        if not found:
            return
        # a Hangul reading replaces PP-OCR's line for the same region; lines stay in reading order
        order = {text_line(r, "", 0.0, width, height).box: n for n, r in enumerate(regions)}
        replaced = {line.box for line in found}
        perception = analysis.perception
        perception.text_present = True
        lines = [line for line in perception.text if line.box not in replaced] + found
        perception.text = sorted(lines, key=lambda line: order.get(line.box, len(order)))
