"""Bad input, as real files: broken images are skipped with a one-line reason and never stop a run,
odd-but-valid images index fine, bad queries and bad ``--index`` paths are clear errors."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.images import MAX_PIXELS, WORKING_SIDE, load_image
from retriever import Engine, MoairError

MOAIR = str(Path(sys.executable).parent / "moair")
GOOD = ("darknet-dog.jpg", "skimage-chelsea.png")


# -- building bad files ----------------------------------------------------------------------------


def _jpeg_header_end(data: bytes) -> int:
    """Offset just past the start-of-scan segment: everything before it is valid JPEG header."""
    assert data[:2] == b"\xff\xd8"
    i = 2
    while True:
        assert data[i] == 0xFF, "unexpected JPEG layout"
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        i += 2 + length
        if marker == 0xDA:
            return i


def make_empty(path: Path, photo) -> None:
    path.write_bytes(b"")


def make_text(path: Path, photo) -> None:
    path.write_text("shopping list\n- milk\n- eggs\n")


def make_truncated(path: Path, photo) -> None:
    data = photo("dog").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def make_corrupt(path: Path, photo) -> None:
    data = photo("dog").read_bytes()
    end = _jpeg_header_end(data)
    noise = random.Random(1234).randbytes(len(data) - end - 2)
    path.write_bytes(data[:end] + noise + b"\xff\xd9")


def make_bomb(path: Path, photo) -> None:
    Image.new("1", (20000, 20000)).save(path)  # 400 MP, a few tens of KB on disk


def make_dangling_link(path: Path, photo) -> None:
    path.symlink_to(path.parent / "gone-away.jpg")


BAD = {
    "empty.jpg": (make_empty, "empty"),
    "notes.jpg": (make_text, "not an image"),
    "truncated.jpg": (make_truncated, "truncated"),
    "corrupt.jpg": (make_corrupt, "corrupt"),
    "bomb.png": (make_bomb, "too large"),
    "dangling.jpg": (make_dangling_link, "cannot read"),
}


def assert_one_line(reason: str) -> None:
    assert reason.strip() and "\n" not in reason and "Traceback" not in reason, repr(reason)


def assert_good_photos_found(engine: Engine, folder: Path) -> None:
    hits = engine.search("a dog", k=10)
    assert sorted(h.path for h in hits) == sorted(str(folder / name) for name in GOOD)
    assert hits[0].path == str(folder / "darknet-dog.jpg")


@pytest.mark.parametrize("name", list(BAD))
def test_bad_file_is_skipped_with_a_one_line_reason(name, tmp_path, photo_dir, photo):
    """One broken file among two good photos: the run finishes, the photos are searchable and the
    broken file is reported once, with a specific one-line reason."""
    folder = photo_dir("dog", "chelsea")
    make, expected = BAD[name]
    make(folder / name, photo)
    with Engine.open(tmp_path / "idx.moair", create=True) as engine:
        report = engine.add([folder])
        assert (report.added, report.interrupted) == (2, False)
        said = report.failed if name == "dangling.jpg" else report.skipped  # a link may lead somewhere next run
        assert [path for path, _ in report.skipped + report.failed] == [str(folder / name)]
        reason = said[0][1]
        assert expected in reason, reason
        assert_one_line(reason)
        assert len(engine) == 2
        assert_good_photos_found(engine, folder)
        with pytest.raises(MoairError, match="not in the index"):
            engine.inspect(str(folder / name))


def _blank_png(path: Path, pixels: float) -> Path:
    width = 10_000
    Image.new("1", (width, int(pixels) // width)).save(path)  # cheap: a few KB on disk
    return path


def test_image_over_max_pixels_is_refused(tmp_path):
    """An image just over MAX_PIXELS is refused with a one-line "too large" reason."""
    path = _blank_png(tmp_path / "big.png", MAX_PIXELS * 1.1)
    with pytest.raises(MoairError, match="too large") as caught:
        load_image(path)
    assert_one_line(str(caught.value))


def test_image_under_max_pixels_is_decoded(tmp_path):
    """An image under MAX_PIXELS (a 95 MP scan, say) is decoded and scaled to the working size,
    not refused as a decompression bomb."""
    path = _blank_png(tmp_path / "big.png", MAX_PIXELS * 0.95)
    loaded = load_image(path)
    assert loaded.width == 10_000 and max(loaded.rgb.shape[:2]) == WORKING_SIDE


# -- odd but valid images ------------------------------------------------------------------------


def _rgb(photo, name: str, size: tuple[int, int] | None = None) -> Image.Image:
    image = Image.open(photo(name)).convert("RGB")
    return image.resize(size) if size else image


def odd_cmyk(path, photo):
    source = _rgb(photo, "coffee")
    source.convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"

    def check(loaded):
        assert np.abs(loaded.rgb.astype(int) - np.asarray(source)).mean() < 10  # colours kept, not inverted

    return source.size, check


def odd_gray16(path, photo):
    gray8 = np.asarray(Image.open(photo("camera")).convert("L"))
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode in ("I;16", "I")

    def check(loaded):
        rgb = loaded.rgb
        assert 40 < rgb.mean() < 215 and rgb.std() > 30  # neither saturated nor black
        assert np.abs(rgb[:, :, 0].astype(int) - gray8).mean() < 3  # same picture as the 8-bit source
        assert (rgb[:, :, 0] == rgb[:, :, 2]).all()

    return (gray8.shape[1], gray8.shape[0]), check


def odd_palette_transparent(path, photo):
    image = _rgb(photo, "astronaut").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    image.save(path, transparency=0)
    indices = np.asarray(Image.open(path))
    assert Image.open(path).mode == "P" and (indices == 0).any()

    def check(loaded):
        assert (loaded.rgb[indices == 0] == 255).all()  # transparent pixels composited on white
        assert loaded.rgb[indices != 0].mean() < 200

    return image.size, check


def odd_rgba(path, photo):
    source = _rgb(photo, "astronaut")
    alpha = np.zeros(source.size[::-1], np.uint8)
    alpha[:, source.size[0] // 2 :] = 255
    rgba = source.copy()
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)

    def check(loaded):
        half = source.size[0] // 2
        assert (loaded.rgb[:, :half] == 255).all()  # transparent half is white
        assert np.array_equal(loaded.rgb[:, half:], np.asarray(source)[:, half:])  # opaque half unchanged

    return source.size, check


def odd_la(path, photo):
    gray = Image.open(photo("camera")).convert("L")
    alpha = np.full(gray.size[::-1], 255, np.uint8)
    alpha[: gray.size[1] // 2] = 0
    la = gray.copy()
    la.putalpha(Image.fromarray(alpha))
    assert la.mode == "LA"
    la.save(path)

    def check(loaded):
        half = gray.size[1] // 2
        assert (loaded.rgb[:half] == 255).all()
        assert np.array_equal(loaded.rgb[half:, :, 1], np.asarray(gray)[half:])

    return gray.size, check


def odd_exif_rotated(path, photo):
    source = _rgb(photo, "horses")  # 773x512, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    source.save(path, exif=exif, quality=95)
    width, height = source.size

    def check(loaded):
        assert loaded.rgb.shape == (width, height, 3)  # portrait after rotation
        clockwise = np.rot90(np.asarray(source), k=-1).astype(int)
        counter = np.rot90(np.asarray(source), k=1).astype(int)
        assert np.abs(loaded.rgb - clockwise).mean() < np.abs(loaded.rgb - counter).mean() / 3

    return (height, width), check


def odd_animated_gif(path, photo):
    first, second = _rgb(photo, "astronaut", (256, 256)), _rgb(photo, "coffee", (256, 256))
    first.save(path, save_all=True, append_images=[second], duration=200, loop=0)
    assert Image.open(path).n_frames == 2

    def check(loaded):
        rgb = loaded.rgb.astype(int)
        assert np.abs(rgb - np.asarray(first)).mean() < np.abs(rgb - np.asarray(second)).mean() / 3

    return first.size, check


def odd_gray_jpeg(path, photo):
    gray = Image.open(photo("camera")).convert("L")
    gray.save(path, quality=95)
    assert Image.open(path).mode == "L"

    def check(loaded):
        assert (loaded.rgb[:, :, 0] == loaded.rgb[:, :, 1]).all()
        assert np.abs(loaded.rgb[:, :, 0].astype(int) - np.asarray(gray)).mean() < 5

    return gray.size, check


ODD = {
    "cmyk.jpg": odd_cmyk,
    "gray16.png": odd_gray16,
    "palette-transparent.png": odd_palette_transparent,
    "rgba.png": odd_rgba,
    "gray-alpha.png": odd_la,
    "exif-rotated.jpg": odd_exif_rotated,
    "animated.gif": odd_animated_gif,
    "gray.jpg": odd_gray_jpeg,
}


@pytest.mark.parametrize("name", list(ODD))
def test_unusual_but_valid_image_is_indexed(name, tmp_path, photo_dir, photo):
    """Unusual modes and containers decode to sensible RGB and are indexed, not skipped; the recorded
    size is the displayed one (EXIF rotation applied)."""
    folder = photo_dir("dog", "chelsea")
    path = folder / name
    (width, height), check = ODD[name](path, photo)

    loaded = load_image(path)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3
    assert (loaded.width, loaded.height) == (width, height)
    assert loaded.rgb.shape[:2] == (height, width)
    check(loaded)

    with Engine.open(tmp_path / "idx.moair", create=True) as engine:
        report = engine.add([folder])
        assert report.skipped == [] and report.added == 3
        assert len(engine) == 3
        record = engine.inspect(str(path))
        assert (record.perception.width, record.perception.height) == (width, height)


# -- bad files across runs -----------------------------------------------------------------------


def test_bad_files_are_remembered_and_retried_only_when_changed(tmp_path, photo_dir, photo):
    """A second run does not re-try unchanged bad files (``skipped_before``); a bad file replaced by a
    good image is indexed, one replaced by a copy of an indexed photo is linked, and one that changed
    but is still bad is reported again."""
    folder = photo_dir("dog", "chelsea")
    bad = ["empty.jpg", "notes.jpg", "truncated.jpg", "corrupt.jpg", "bomb.png"]
    for name in bad:
        BAD[name][0](folder / name, photo)
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True) as engine:
        first = engine.add([folder])
        assert first.added == 2 and sorted(p for p, _ in first.skipped) == sorted(str(folder / n) for n in bad)

    with Engine.open(index, create=True) as engine:  # remembered across opens, i.e. in the database
        second = engine.add([folder])
        assert (second.added, second.unchanged, second.skipped, second.skipped_before) == (0, 2, [], 5)
        assert len(engine) == 2

        _rgb(photo, "coffee").save(folder / "truncated.jpg", quality=90)  # now a good, new image
        (folder / "empty.jpg").write_bytes(photo("dog").read_bytes())  # now a copy of an indexed photo
        (folder / "notes.jpg").write_text("still not an image, but longer than before\n")
        third = engine.add([folder])
        assert (third.added, third.linked, third.skipped_before) == (1, 1, 2)
        assert [p for p, _ in third.skipped] == [str(folder / "notes.jpg")]
        assert "not an image" in third.skipped[0][1]
        assert len(engine) == 3
        assert engine.inspect(str(folder / "truncated.jpg")).perception.width == 600
        assert sorted(engine.inspect(str(folder / "empty.jpg")).paths) == [
            str(folder / "darknet-dog.jpg"),
            str(folder / "empty.jpg"),
        ]
        assert engine.search("a cup of coffee", k=1)[0].path == str(folder / "truncated.jpg")

        fourth = engine.add([folder])
        assert (fourth.added, fourth.linked, fourth.skipped, fourth.skipped_before) == (0, 0, [], 3)


# -- bad queries ---------------------------------------------------------------------------------


def _not_an_image(tmp_path):
    path = tmp_path / "query.jpg"
    path.write_text("this is not a picture")
    return path


BAD_QUERIES = {
    "empty text": (lambda tmp: {"text": ""}, "give a text query"),
    "blank text": (lambda tmp: {"text": "  \n\t "}, "give a text query"),
    "no query": (lambda tmp: {}, "give a text query"),
    "k=0": (lambda tmp: {"text": "a dog", "k": 0}, "k must be"),
    "k=-3": (lambda tmp: {"text": "a dog", "k": -3}, "k must be"),
    "k too big": (lambda tmp: {"text": "a dog", "k": 10**6}, "k must be"),
    "k string": (lambda tmp: {"text": "a dog", "k": "5"}, "k must be"),
    "k float": (lambda tmp: {"text": "a dog", "k": 2.5}, "k must be"),
    "k bool": (lambda tmp: {"text": "a dog", "k": True}, "k must be"),
    "text int": (lambda tmp: {"text": 123}, "must be a string"),
    "text bytes": (lambda tmp: {"text": b"a dog"}, "must be a string"),
    "image not an image": (lambda tmp: {"image": _not_an_image(tmp)}, "query image: not an image"),
    "image missing": (lambda tmp: {"image": tmp / "missing.jpg"}, "query image: file not found"),
    "image directory": (lambda tmp: {"image": tmp}, "query image: is a directory"),
    "image empty bytes": (lambda tmp: {"image": b""}, "query image: empty"),
    "image truncated": (lambda tmp: {"image": (tmp / "t.jpg")}, "query image: truncated"),
}


@pytest.mark.parametrize("case", list(BAD_QUERIES))
def test_bad_query_is_a_clear_error(case, engine, tmp_path, photo):
    """Bad query arguments raise MoairError with a one-line message naming the problem."""
    make_truncated(tmp_path / "t.jpg", photo)
    kwargs, expected = BAD_QUERIES[case]
    with pytest.raises(MoairError) as caught:
        engine.search(**kwargs(tmp_path))
    assert expected in str(caught.value)
    assert_one_line(str(caught.value))


def test_valid_query_still_works_after_bad_ones(engine):
    """The read-only engine is unharmed by the errors above (guards against the fixture being wrong)."""
    assert len(engine.search("a dog", k=3)) == 3


# -- bad --index paths on the command line -------------------------------------------------------


def moair(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "MOAIR_INDEX")}
    return subprocess.run([MOAIR, *map(str, args)], check=False, capture_output=True, text=True, timeout=120, env=env)


def assert_clean_cli_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "error:" in result.stderr and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def _plain_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "report.txt").write_text("not an index")
    return folder


def _plain_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not an index")
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: Path("/nonexistent/path"), "no index at"),
        (_plain_folder, "not a moair index"),
        (_plain_file, "not a moair index"),
    ],
    ids=["missing", "plain-folder", "plain-file"],
)
def test_cli_search_with_bad_index_path(make, expected, tmp_path):
    """``moair search`` on a missing path, or on a folder or file that is no index: exit 2, one
    ``error:`` message, no traceback."""
    result = moair("search", "x", "--index", make(tmp_path))
    assert_clean_cli_error(result, expected)


def test_cli_index_refuses_a_folder_that_is_not_an_index(tmp_path, photo_dir):
    """``moair index`` must not turn someone's non-empty folder into an index."""
    target = _plain_folder(tmp_path)
    before = sorted(p.name for p in target.iterdir())
    result = moair("index", photo_dir("dog"), "--index", target, "-q")
    assert_clean_cli_error(result, "not a moair index")
    assert sorted(p.name for p in target.iterdir()) == before


@pytest.mark.parametrize(
    "name",
    ["a-long-folder-name-" * 4 + "that-does-not-exist", "photos [old]", "x[/y]"],
    ids=["long-path", "brackets", "closing-tag-like"],
)
def test_cli_error_is_one_line_with_the_path_verbatim(name, tmp_path):
    """The error names the path exactly as given, on one line: not wrapped at 80 columns, and not
    parsed as console markup when the path contains square brackets."""
    index = tmp_path / name
    result = moair("search", "x", "--index", index)
    assert_clean_cli_error(result, "error:")
    assert str(index) in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
