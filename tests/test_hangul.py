"""Korean writing in photos (issue 14): the hangul expert reads what PP-OCR cannot, and a Korean
quoted query finds it.

The signs are drawn in Debian's Nanum fonts (``make test`` installs fonts-nanum) onto the real
sample photos, in the colours and sizes of real signs, and read by the real Tesseract Korean model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from indexer.experts.base import Analysis
from indexer.experts.hangul import HangulOcr
from indexer.experts.ocr import PaddleOcr, read_regions
from indexer.images import load_image
from retriever import Engine

NANUM = Path("/usr/share/fonts/truetype/nanum")

# (file, base photo, text, font, ink, ground, font size as a fraction of the photo's width)
SIGNS = [
    ("pharmacy", "horses", "약국", "NanumSquareB", (0, 120, 60), "white", 0.08),
    ("parking", "dog", "주차 금지", "NanumGothicBold", (200, 20, 20), "white", 0.05),
    ("station", "giraffe", "서울역 출구", "NanumBarunGothic", "white", (20, 60, 140), 0.04),
    ("cafe", "coffee", "카페 24시", "NanumSquareRoundB", (40, 30, 20), (250, 220, 120), 0.05),
]


def draw_sign(
    source: Path, dest: Path, text: str, font: str, ink, ground, size: float
) -> tuple[float, float, float, float]:
    """Draw ``text`` on a filled plate onto the photo; returns the plate's box as fractions."""
    image = Image.open(source).convert("RGB")
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(NANUM / f"{font}.ttf"), max(20, round(image.width * size)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    x, y, pad = image.width // 8, image.height // 6, face.size // 3
    plate = (x - pad, y - pad, x + right - left + pad, y + bottom - top + pad)
    draw.rectangle(plate, fill=ground)
    draw.text((x - left, y - top), text, fill=ink, font=face)
    image.save(dest)
    return (plate[0] / image.width, plate[1] / image.height, plate[2] / image.width, plate[3] / image.height)


@pytest.fixture(scope="module")
def signs(tmp_path_factory, photo) -> dict[str, tuple[Path, str, tuple]]:
    if not NANUM.is_dir():
        pytest.fail("Debian's fonts-nanum is not installed (make test installs it)")
    folder = tmp_path_factory.mktemp("korean-signs")
    made = {}
    for name, base, text, font, ink, ground, size in SIGNS:
        dest = folder / f"sign-{name}.png"
        made[name] = (dest, text, draw_sign(photo(base), dest, text, font, ink, ground, size))
    return made


def read(path: Path) -> Analysis:
    analysis = Analysis.of(load_image(path))
    PaddleOcr().run(analysis)
    HangulOcr().run(analysis)
    return analysis


@pytest.mark.parametrize("name", [s[0] for s in SIGNS])
def test_korean_signs_on_photos_are_read_where_they_are(signs, name):
    path, text, plate = signs[name]
    analysis = read(path)
    lines = [line for line in analysis.perception.text if any("\uac00" <= c <= "\ud7a3" for c in line.text)]
    assert [line.text.replace(" ", "") for line in lines] == [text.replace(" ", "")], analysis.perception.text
    box = lines[0].box
    assert (
        plate[0] - 0.05 <= box[0]
        and box[2] <= plate[2] + 0.05
        and plate[1] - 0.05 <= box[1]
        and box[3] <= plate[3] + 0.05
    )
    assert lines[0].score >= 0.8


def test_pp_ocr_alone_cannot_read_them(signs):
    """Why the expert exists: PP-OCRv4 finds the Korean regions but reads nothing (or Chinese)."""
    for path, text, _ in signs.values():
        analysis = Analysis.of(load_image(path))
        assert read_regions(analysis), path
        PaddleOcr().run(analysis)
        assert not any("\uac00" <= c <= "\ud7a3" for line in analysis.perception.text for c in line.text)


@pytest.mark.parametrize("name", ["page", "text", "coffee", "astronaut", "dog", "chelsea"])
def test_photos_without_korean_get_no_korean_lines(photo, name):
    """Regions PP-OCR rejects in ordinary photos (handwriting, textures) must not become Hangul."""
    analysis = Analysis.of(load_image(photo(name)))
    PaddleOcr().run(analysis)
    before = list(analysis.perception.text)
    HangulOcr().run(analysis)
    assert analysis.perception.text == before


def test_a_korean_quoted_query_finds_the_sign(tmp_path, signs, photo_dir):
    folder = photo_dir("horses", "dog", "giraffe", "coffee", "page", "text")
    for path, _, _ in signs.values():
        (folder / path.name).write_bytes(path.read_bytes())
    with Engine.open(tmp_path / "signs.moair", create=True) as engine:
        engine.add([folder])
        for query, expected in [
            ("'약국' 간판", "sign-pharmacy"),
            ("주차 금지 표지판", "sign-parking"),
            ("서울역 출구", "sign-station"),
        ]:
            hits = engine.search(query, k=3)
            assert Path(hits[0].path).stem == expected, (query, [(h.path, h.score) for h in hits])
        hits = engine.search("'약국' 간판", k=1)
        assert any("약국" in fact for fact in hits[0].evidence)


def test_without_tesseract_the_check_names_the_debian_packages_and_the_way_around(tmp_path, photo_dir):
    """No ``tesseract`` on PATH: creating an index stops before any file, with the fix."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # the venv's programs only
    moair = str(Path(sys.executable).parent / "moair")
    run = subprocess.run(
        [moair, "index", photo_dir("dog"), "--index", tmp_path / "x.moair"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert "the hangul expert cannot run: Tesseract is not installed" in message
    assert "apt-get install tesseract-ocr tesseract-ocr-kor" in message
    assert "--without-expert hangul" in message
    assert not (tmp_path / "x.moair").exists()
    run = subprocess.run(
        [moair, "index", photo_dir("dog"), "--index", tmp_path / "x.moair", "--without-expert", "hangul", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    with Engine.open(tmp_path / "x.moair") as engine:
        assert "hangul" not in engine.store.config.expert_versions() and len(engine) == 1
    with pytest.raises(Exception, match="was built with the experts"):
        Engine.open(tmp_path / "x.moair", experts=["detection", "tags"])
