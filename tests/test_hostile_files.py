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

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from moair_process import MOAIR, measured_moair  # noqa: E402


def moair(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MOAIR, *map(str, args)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


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
    return folder, {
        "fifo.jpg": "not a regular file (a FIFO)",
        "zero.jpg": "not a regular file (a device)",
        "urandom.png": "not a regular file (a device)",
        "sparse.jpg": "file too large",
    }


def test_fifos_devices_and_giant_files_are_skipped_unread_and_the_photos_indexed(tmp_path, hostile_folder):
    folder, expected = hostile_folder
    run, peak_mib = measured_moair(
        "index", folder, "--index", tmp_path / "x.moair", "--json", timeout=240
    )  # a FIFO read would hang
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
    assert json.loads(moair("search", "--index", index, "a dog", "-k", "1", "--json").stdout)[0]["path"].endswith(
        "dog\x1b[31mred.jpg"
    )


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
config = IndexConfig.model_validate_json(Path(sys.argv[1]).read_text())
folder, start = Path(sys.argv[2]), float(sys.argv[3])
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
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_RACE, str(config), str(tmp_path), str(start), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    lines = [line for out, _ in outputs for line in out.splitlines()]
    assert not [line for line in lines if line.startswith("CRASH")], [
        line for line in lines if line.startswith("CRASH")
    ][:2]
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
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
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


def test_file_names_that_are_not_utf8_are_indexed_searched_and_shown_escaped(tmp_path, photo):
    """Names from old archives and cameras: the exact bytes are kept (Python's surrogateescape),
    found again by search, inspect and remove, and shown as \\xNN wherever text must be valid."""
    from loopback import local_client

    from api.server import create_app

    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))  # a Latin-1 folder name
    folder.mkdir()
    dog = folder / os.fsdecode(b"dog\xff\xfe.jpg")
    shutil.copy(photo("dog"), dog)
    shutil.copy(photo("eagle"), folder / "eagle.jpg")
    index = tmp_path / "x.moair"
    run = moair("index", folder, "--index", index, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["added"] == 2
    run = moair("search", "--index", index, "a dog", "-k", "1", "--json")
    assert json.loads(run.stdout)[0]["path"] == str(tmp_path) + "/caf\\xe9/dog\\xff\\xfe.jpg"
    shown = subprocess.run(
        [MOAIR, "search", "--index", index, "a dog", "-k", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    ).stdout  # decoded strictly: raw bytes would fail
    assert "\\xff\\xfe" in shown and "caf\\xe9" in shown
    with Engine.open(index) as engine:
        hit = engine.search("a dog", k=1)[0]
        assert hit.path == str(dog) and Path(hit.path).read_bytes() == photo("dog").read_bytes()
        assert engine.inspect(str(dog)).item_id == hit.item_id
    with local_client(create_app(index, api_key="")) as client:
        found = client.post("/search", json={"text": "a dog", "k": 1}).json()["hits"][0]
        assert found["path"].endswith("caf\\xe9/dog\\xff\\xfe.jpg")
        assert client.get(f"/items/{found['item_id']}/thumbnail").status_code == 200
    assert moair("remove", "--index", index, dog).returncode == 0
    dog.rename(folder / os.fsdecode(b"\xc0dog.jpg"))  # moved: the new name is linked, the old one pruned
    report = json.loads(moair("index", folder, "--index", index, "--json").stdout)
    assert (report["added"], report["linked"], report["items_in_index"]) == (1, 0, 2)
    assert moair("index", folder, "--index", index, "--json").returncode == 0
    with Engine.open(index) as engine:
        assert engine.stats().paths == 2
        assert Path(engine.search("a dog", k=1)[0].path).name == os.fsdecode(b"\xc0dog.jpg")


def test_records_of_bad_files_deleted_from_disk_are_pruned(tmp_path, photo_dir):
    folder = photo_dir("dog")
    (folder / "broken.jpg").write_bytes(b"not an image")
    with Engine.open(tmp_path / "x.moair", create=True) as engine:
        engine.add([folder])
        assert engine.stats().bad_files == 1
        (folder / "broken.jpg").unlink()
        engine.add([folder], prune=True)
        assert engine.stats().bad_files == 0 and len(engine) == 1


def deep_folder(top: Path, levels: int, name: str, data: bytes) -> Path:
    """A file ``name`` at the bottom of a chain of 250-character folder names below ``top``, made
    through descriptors so that its path may exceed PATH_MAX (4096); returns the chain's first folder."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir("d" * 250, dir_fd=fd)
        deeper = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    written = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(written, data)
    os.close(written)
    os.close(fd)
    return top / ("d" * 250)


def test_a_folder_deeper_than_path_max_is_said(tmp_path, photo_dir, photo):
    folder = photo_dir("dog")
    first = deep_folder(folder, 17, "eagle.jpg", photo("eagle").read_bytes())  # about 4,300 characters
    with Engine.open(tmp_path / "x.moair", create=True) as engine:
        report = engine.add([folder])
    assert report.added == 1
    assert report.failed and all(reason == "cannot list folder: File name too long" for _, reason in report.failed)
    assert report.failed[0][0].startswith(str(first))


def test_a_folder_that_cannot_be_listed_is_said_and_its_indexed_files_kept(tmp_path, photo_dir, photo):
    """A folder that became unreadable is not a folder whose files were deleted. Root reads any
    folder, so as root the command runs without the capabilities that bypass permissions."""
    folder = photo_dir("dog")
    locked = folder / "locked"
    locked.mkdir()
    shutil.copy(photo("eagle"), locked / "eagle.jpg")
    as_a_user = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv (util-linux) to drop the permission-bypassing capabilities")
        no_bypass = "-dac_override,-dac_read_search"
        as_a_user = ["setpriv", f"--inh-caps={no_bypass}", f"--bounding-set={no_bypass}"]
    index = tmp_path / "x.moair"

    def index_run() -> dict:
        run = subprocess.run(
            [*as_a_user, MOAIR, "index", str(folder), "--index", str(index), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    assert index_run()["added"] == 2
    locked.chmod(0)
    try:
        report = index_run()
    finally:
        locked.chmod(0o755)
    assert report["failed"] == [{"path": str(locked), "reason": "cannot list folder: Permission denied"}]
    assert (report["removed"], report["items_in_index"]) == (0, 2)


@pytest.mark.parametrize(
    "index_type, says",
    [
        ("IVF100000000,Flat", "at most 1,048,576"),
        ("IVF999999999", "at most 1,048,576"),
        ("HNSW100000", "at most 256"),
    ],
)
def test_index_types_too_big_to_build_are_refused_before_building(tmp_path, photo_dir, index_type, says):
    folder = photo_dir("dog")
    run, peak_mib = measured_moair(
        "index", folder, "--index", tmp_path / "x.moair", "--index-type", index_type, timeout=240
    )
    assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert peak_mib < 2048  # nothing was built


def test_an_index_type_over_the_memory_budget_is_refused(tmp_path, photo_dir):
    with Engine.open(tmp_path / "x.moair", create=True) as engine:
        engine.add([photo_dir("dog", "chelsea")])
        with pytest.raises(MoairError, match="more than the memory budget"):
            engine.configure(index_type="HNSW32,Flat", memory_budget=1000)
        assert engine.stats().requested_index_type == "auto"  # unchanged
