"""Hostile files in a collection (issue 15): nothing on disk may stop, hang or mislead indexing.

Each hostile file is made at test time beside real sample photos: a FIFO and links to endless
devices named like photos, a sparse file larger than the size limit, images a few pixels wide, a
16-bit greyscale scan, a file name with an ANSI escape. The real ``moair`` command runs on them
in a subprocess with a time limit, and its peak memory is read from the operating system.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.errors import MoairError
from indexer.images import MAX_FILE_BYTES, load_image
from retriever import Engine

MOAIR = str(Path(sys.executable).parent / "moair")
# The moair command, printing its peak memory at exit: VmHWM, which starts again at exec (ru_maxrss
# would carry the forking test process's own).
MEASURED_MOAIR = (
    "import re, sys\nfrom api.cli import main\nsys.argv[0] = 'moair'\ntry:\n    main()\nfinally:\n"
    "    print('peak KiB', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), file=sys.stderr)"
)


def moair(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([MOAIR, *map(str, args)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(width * 7919 + height)
    if mode == "I;16":
        array = rng.integers(0, 65535, (height, width), dtype=np.uint16)
    else:
        array = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    data = io.BytesIO()
    Image.fromarray(array).save(data, "PNG")
    return data.getvalue()


@pytest.fixture
def hostile_folder(tmp_path, photo_dir) -> tuple[Path, dict[str, str]]:
    """Real photos with hostile files beside them: name -> what the reason must say."""
    folder = photo_dir("dog", "chelsea", "coffee")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "urandom.png").symlink_to("/dev/urandom")
    with open(folder / "sparse.jpg", "wb") as f:
        f.truncate(MAX_FILE_BYTES * 20)  # 4 GB that takes no disk
    return folder, {"fifo.jpg": "not a regular file (a FIFO)", "zero.jpg": "not a regular file (a device)",
                    "urandom.png": "not a regular file (a device)", "sparse.jpg": "file too large"}


def test_fifos_devices_and_giant_files_are_skipped_unread_and_the_photos_indexed(tmp_path, hostile_folder):
    folder, expected = hostile_folder
    run = subprocess.run(  # the real command, in a process that says its own peak memory at exit
        [sys.executable, "-c", MEASURED_MOAIR, "index", str(folder), "--index", str(tmp_path / "x.moair"), "--json"],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,  # a FIFO read would hang here
    )
    peak_mib = int(run.stderr.strip().splitlines()[-1].removeprefix("peak KiB ")) / 1024
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["added"] == 3 and report["items_in_index"] == 3
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == set(expected)
    for name, says in expected.items():
        assert reasons[name].startswith(says) and "\n" not in reasons[name], (name, reasons[name])
    assert peak_mib < 2048, f"peak memory {peak_mib:.0f} MiB: a hostile file was read"


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_an_image_query_from_a_device_or_fifo_is_refused_at_once(tmp_path, sample_index, target):
    if target == "fifo":
        os.mkfifo(tmp_path / "q.jpg")
        target = tmp_path / "q.jpg"
    run = moair("search", "--index", sample_index, "--image", target, timeout=60)
    assert run.returncode == 2
    assert "not a regular file" in run.stderr
    with pytest.raises(MoairError, match="not a regular file"):
        load_image(target)


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (16, 16), (12, 40), (2000, 10), (2000, 40)])
def test_tiny_and_thin_images_are_indexed_and_searchable(tmp_path, photo_dir, size):
    folder = photo_dir("dog")
    (folder / "tiny.png").write_bytes(png(*size))
    with Engine.open(tmp_path / "x.moair", create=True) as engine:
        report = engine.add([folder])
        assert report.skipped == [] and report.failed == [] and len(engine) == 2
        assert Path(engine.search(image=folder / "tiny.png", k=1)[0].path).name == "tiny.png"


def test_a_large_16_bit_greyscale_scan_is_decoded():
    image = load_image(png(4096, 4096, "I;16"))
    assert image.rgb.shape == (1024, 1024, 3) and (image.width, image.height) == (4096, 4096)
    assert image.rgb.std() > 10  # the values were rescaled, not flattened


def test_control_characters_in_file_names_are_shown_escaped(tmp_path, photo):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo("dog"), folder / "dog\x1b[31mred.jpg")
    index = tmp_path / "x.moair"
    assert moair("index", folder, "--index", index, "-q").returncode == 0
    run = moair("search", "--index", index, "a dog", "-k", "1")
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout and "\\x1b" in run.stdout  # shown, not obeyed by the terminal
    assert json.loads(moair("search", "--index", index, "a dog", "-k", "1", "--json").stdout)[0]["path"].endswith("dog\x1b[31mred.jpg")


def test_an_api_key_that_http_cannot_carry_is_refused_at_start(sample_index):
    from api.server import create_app

    for key in ("비밀번호", "has space", "tab\tkey"):
        with pytest.raises(MoairError, match="printable ASCII"):
            create_app(sample_index, api_key=key)


# Each process creates the same new indexes as the others, round by round, at the same instants.
CREATE_RACE = """
import sys, time, traceback
from pathlib import Path
from indexer.errors import MoairError
from indexer.store import IndexConfig, Store
config, folder, start = IndexConfig.model_validate_json(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), float(sys.argv[3])
for round_number in range(int(sys.argv[4])):
    time.sleep(max(0.0, start + 0.15 * round_number - time.time()))
    try:
        Store.create(folder / f"race-{round_number}.moair", config).close()
        print("created")
    except MoairError as e:
        print("refused", e)
    except Exception:
        print("CRASH", traceback.format_exc().replace(chr(10), " | "))
"""


def test_processes_creating_one_new_index_at_the_same_instant_leave_one_good_index(tmp_path, engine):
    """Each creation either builds the index or is refused with a message: no traceback, and every
    index left behind opens."""
    config = tmp_path / "config.json"
    config.write_text(engine.store.config.model_dump_json())
    rounds, start = 20, time.time() + 3
    runs = [subprocess.Popen([sys.executable, "-c", CREATE_RACE, str(config), str(tmp_path), str(start), str(rounds)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outputs = [run.communicate(timeout=300) for run in runs]
    lines = [line for out, _ in outputs for line in out.splitlines()]
    assert not [line for line in lines if line.startswith("CRASH")], [line for line in lines if line.startswith("CRASH")][:2]
    assert all(line.startswith(("created", "refused")) for line in lines) and len(lines) == 6 * rounds, outputs
    assert sum(line == "created" for line in lines) == rounds  # one creator per index
    for round_number in range(rounds):
        with Engine.open(tmp_path / f"race-{round_number}.moair") as opened:
            assert len(opened) == 0



@pytest.fixture
def tmpfs(tmp_path):
    """A small file system of its own (tmpfs), to fill up or make read-only; needs mount rights
    (root, as in CI)."""
    mounted = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True)
        if run.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_a_full_disk_stops_indexing_with_one_line_and_keeps_what_was_committed(tmpfs, samples):
    disk = tmpfs("400k")  # holds the database of the 20 photos, not the FAISS files beside it
    index = disk / "x.moair"
    run = moair("index", samples, "--index", index, "-q")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    line = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert line and "disk full at" in line[0] and "item(s) committed; free space and run again" in line[0], run.stderr
    committed = int(line[0].split(": ")[2].split(" item")[0])
    assert committed > 0
    with Engine.open(index) as engine:  # searchable from what was committed: the vectors are rebuilt from SQLite
        assert len(engine) == committed
        assert Path(engine.search("a dog", k=1)[0].path).name.startswith("darknet-")
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
    assert moair("index", samples, "--index", index, "-q").returncode == 0
    with Engine.open(index) as engine:
        assert len(engine) == 20


def test_a_read_only_index_is_searched_and_writing_it_names_the_cause(tmpfs, sample_index):
    disk = tmpfs("64m")
    index = disk / "x.moair"
    shutil.copytree(sample_index, index)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    run = moair("search", "--index", index, "a dog", "-k", "1", "--json")
    assert run.returncode == 0, run.stderr
    assert Path(json.loads(run.stdout)[0]["path"]).name == "darknet-dog.jpg"
    assert moair("stats", "--index", index).returncode == 0
    for command in (["index", sample_index.parent], ["remove", "x.jpg"]):
        run = moair(command[0], "--index", index, *command[1:])
        assert run.returncode == 2 and "cannot be written (a read-only folder or file system)" in run.stderr, run.stderr
        assert "restore it from a backup" not in run.stderr


def test_wrong_types_in_the_python_api_are_clear_errors(engine):
    with pytest.raises(MoairError, match="takes the index's path"):
        Engine.open(3)
    for wrong in (b"photo.jpg", 3, [b"photo.jpg"], [None]):
        with pytest.raises(MoairError, match=r"add\(\) takes"):
            engine.add(wrong)
        with pytest.raises(MoairError, match=r"remove\(\) takes"):
            engine.remove(wrong)
    for wrong in ("1", 1.0, True):
        with pytest.raises(MoairError, match="takes an item id"):
            engine.similar(wrong)
    assert engine.similar(1, k=1)  # the right type still works
