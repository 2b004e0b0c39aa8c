"""A broken install is a start-up error, not a bad photo (issue 13).

The broken model is made the way OpenCV 5.1 broke it: the COCO detector's loader,
``cv2.dnn.readNetFromTensorflow``, is taken away in a fresh ``moair`` process (models load once per
process, so this cannot be done in the test process, which loaded them already). Everything else is
the real command on real photos.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.errors import MoairError
from indexer.experts.tags import ImageNetTagger
from indexer.model_check import ModelCheck, fix_for
from indexer.store import DB_NAME
from retriever import Engine

# The moair command with OpenCV's TensorFlow importer removed, as OpenCV 5.1 removed it.
WITHOUT_TF_IMPORTER = (
    "import sys, cv2; del cv2.dnn.readNetFromTensorflow; from api.cli import main; sys.argv[0] = 'moair'; main()"
)


def moair(*args, broken: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", WITHOUT_TF_IMPORTER] if broken else [str(Path(sys.executable).parent / "moair")]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=300)


def index_rows(index: Path) -> tuple[list, list, int]:
    """What an index holds: its files, its skipped files and its item count."""
    with sqlite3.connect(index / DB_NAME) as db:
        files = db.execute("SELECT path, item_id, size, mtime_ns FROM files ORDER BY path").fetchall()
        skipped = db.execute("SELECT * FROM skipped ORDER BY path").fetchall()
        items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    return files, skipped, items


def test_a_broken_expert_stops_the_run_before_any_file_and_the_files_index_once_it_works(tmp_path, photo_dir):
    folder = photo_dir("dog")
    index = tmp_path / "photos.moair"
    assert moair("index", folder, "--index", index, "--json").returncode == 0
    before = index_rows(index)
    photo_dir("chelsea", "coffee")  # two new photos in the same folder

    broken = moair("index", folder, "--index", index, broken=True)
    assert broken.returncode != 0
    message = broken.stderr.strip().splitlines()[-1]
    assert "detection expert cannot run" in message and "readNetFromTensorflow" in message, broken.stderr
    assert "opencv-python-headless" in message and "Fix:" in message, message
    assert "skipped" not in broken.stdout + broken.stderr  # no photo was blamed
    assert index_rows(index) == before  # nothing committed, nothing remembered as bad

    fresh = tmp_path / "new.moair"
    assert moair("index", folder, "--index", fresh, broken=True).returncode != 0
    assert not fresh.exists()  # a new index is not even created

    fixed = json.loads(moair("index", folder, "--index", index, "--json").stdout)
    assert (fixed["added"], fixed["unchanged"], fixed["skipped"], fixed["failed"]) == (2, 1, [], [])


def test_doctor_lists_each_model_with_its_packages_and_names_the_broken_one(sample_index):
    healthy = moair("doctor", "--json")
    assert healthy.returncode == 0, healthy.stderr
    checks = [ModelCheck.model_validate(c) for c in json.loads(healthy.stdout)]
    by_name = {(c.kind, c.name): c for c in checks}
    for model in ("detection", "tags", "ocr", "hangul", "colors", "medium", "relations"):
        assert by_name["expert", model].ok is True
    assert by_name["text embedder", "e5-small"].ok and by_name["backbone", "efficientnet-lite3"].ok
    assert by_name["text embedder", "minilm"].ok  # installed with the test extras: loaded and run
    assert by_name["backbone", "clip"].ok is None and "checkpoint" in by_name["backbone", "clip"].detail
    assert by_name["generator", "gemma"].ok is None  # loaded only with --generator
    assert by_name["expert", "detection"].packages["opencv-python-headless"].startswith("4.")

    of_index = json.loads(moair("doctor", "--index", sample_index, "--json").stdout)
    assert [(c["kind"], c["name"], c["ok"]) for c in of_index][-3:] == [
        ("text embedder", "e5-small", True),
        ("backbone", "efficientnet-lite3", True),
        ("generator", "gemma", None),
    ]

    broken = moair("doctor", broken=True)
    assert broken.returncode == 1
    assert "expert detection: OpenCV" in broken.stderr and "readNetFromTensorflow" in broken.stderr


def test_the_fix_names_packages_outside_moairs_ranges():
    assert "'opencv-python-headless<5,>=4.8'" in fix_for({"opencv-python-headless": "5.1.0.95", "numpy": "2.4.6"})
    assert "numpy" not in fix_for({"opencv-python-headless": "5.1.0.95", "numpy": "2.4.6"})
    assert (
        fix_for({"torch": "", "transformers": ""}, extra="checkpoints", tested=False)
        == "pip install 'moair[checkpoints]'"
    )
    assert fix_for({"numpy": "2.4.6"}).startswith("reinstall the tested versions")


def _failing_for_photos(monkeypatch, error: BaseException, only: str | None = None) -> None:
    """The tag expert fails on photos (not on the start-up check's small image), on all of them or
    on the one whose width is ``only``'s: a fault that appears only during a run."""
    real = ImageNetTagger.run

    def run(self, analysis):
        if analysis.image.width > 200 and (only is None or analysis.image.width == only):
            raise error
        real(self, analysis)

    monkeypatch.setattr(ImageNetTagger, "run", run)


def test_the_same_error_on_several_files_stops_the_run_and_marks_no_file_bad(tmp_path, photo_dir, monkeypatch):
    folder = photo_dir("dog", "chelsea", "coffee", "giraffe", "horses", "eagle")
    index = tmp_path / "same.moair"
    with Engine.open(index, create=True) as engine:
        _failing_for_photos(monkeypatch, RuntimeError("interpreter failed at node 17"))
        with pytest.raises(MoairError, match=r"indexing stopped: the same error on 3 different files.*node"):
            engine.add([folder])
        info = engine.stats()
        assert info.bad_files == 0 and info.items == 0
        monkeypatch.undo()
        report = engine.add([folder])
    assert report.added == 6 and report.skipped == [] and report.failed == []
    assert report.retried == info.failed


def test_memory_error_stops_the_run_at_once(tmp_path, photo_dir, monkeypatch):
    folder = photo_dir("dog", "chelsea", "coffee")
    with Engine.open(tmp_path / "memory.moair", create=True) as engine:
        _failing_for_photos(monkeypatch, MemoryError())
        with pytest.raises(MoairError, match="indexing stopped: MemoryError"):
            engine.add([folder])
        assert engine.stats().skipped == 0


def test_a_file_whose_analysis_failed_is_retried_and_a_bad_file_is_remembered(tmp_path, photo_dir, photo, monkeypatch):
    from PIL import Image

    folder = photo_dir("dog", "chelsea", "coffee")
    (folder / "notes.jpg").write_text("not a picture")
    chelsea_width = Image.open(photo("chelsea")).width
    with Engine.open(tmp_path / "retry.moair", create=True) as engine:
        _failing_for_photos(monkeypatch, ValueError("an odd shape"), only=chelsea_width)
        first = engine.add([folder])
        assert first.added == 2 and [Path(p).name for p, _ in first.skipped] == ["notes.jpg"]
        assert [(Path(p).name, reason) for p, reason in first.failed] == [
            ("skimage-chelsea.png", "analysis failed: ValueError: an odd shape")
        ]
        info = engine.stats()
        assert (info.skipped, info.bad_files, info.failed) == (2, 1, 1)
        monkeypatch.undo()
        second = engine.add([folder])
        assert (second.added, second.retried, second.skipped_before, second.skipped, second.failed) == (1, 1, 1, [], [])
        assert engine.search("고양이", k=1)[0].path.endswith("skimage-chelsea.png")
        assert (engine.stats().bad_files, engine.stats().failed) == (1, 0)


def test_an_older_index_retries_its_analysis_failed_skips(tmp_path, photo_dir):
    """Indexes made before skip kinds stored "analysis failed" skips like bad files; the next
    ``moair index`` tries those files again and keeps the truly bad ones remembered."""
    folder = photo_dir("dog", "chelsea")
    (folder / "notes.jpg").write_text("not a picture")
    index = tmp_path / "old.moair"
    Engine.open(index, create=True).close()
    with sqlite3.connect(index / DB_NAME) as db:  # the skipped table as older moair made and filled it
        db.execute("DROP TABLE skipped")
        db.execute(
            "CREATE TABLE skipped "
            "(path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL)"
        )
        failed = "analysis failed: AttributeError: module 'cv2.dnn' has no attribute 'readNetFromTensorflow'"
        reasons = {
            "darknet-dog.jpg": failed,
            "skimage-chelsea.png": failed,
            "notes.jpg": "not an image (unrecognised format)",
        }
        for name, reason in reasons.items():
            stat = (folder / name).stat()
            db.execute(
                "INSERT INTO skipped VALUES (?, ?, ?, ?)", (str(folder / name), stat.st_size, stat.st_mtime_ns, reason)
            )

    with Engine.open(index) as reader:  # read-only: the old table is read as it is
        assert (reader.stats().bad_files, reader.stats().failed) == (1, 2)
    result = moair("index", folder, "--index", index)
    assert result.returncode == 0, result.stderr
    assert "2 added" in result.stdout and "2 retried" in result.stdout and "+1 bad files unchanged" in result.stdout
    with Engine.open(index) as engine:
        assert (len(engine), engine.stats().bad_files, engine.stats().failed) == (2, 1, 0)
