"""Crash safety: ``kill -9`` during indexing loses no committed item and leaves a readable index that
the next run resumes; a damaged or stale FAISS cache is repaired from SQLite; one writer at a time."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import faiss
import pytest
from PIL import Image, ImageOps

from indexer.shards import FOLDER as VECTORS
from indexer.store import DB_NAME
from retriever import Engine, MoairError
from retriever.search import top_k

MOAIR = str(Path(sys.executable).parent / "moair")
BASES = ("dog", "horses", "person", "giraffe", "eagle", "scream", "astronaut", "chelsea", "coffee", "rocket")
COLLECTION_SIZE = 4 * len(BASES)


def _variants(image: Image.Image) -> list[Image.Image]:
    """Four images with different content from one photo: scaled, mirrored, cropped, rotated crop."""
    image = image.convert("RGB")
    image.thumbnail((400, 400))
    w, h = image.size
    centre = image.crop((w // 8, h // 8, w - w // 8, h - h // 8)).resize((w, h))
    corner = image.crop((0, 0, w * 2 // 3, h * 2 // 3)).transpose(Image.Transpose.ROTATE_90)
    return [image, ImageOps.mirror(image), centre, corner]


@pytest.fixture(scope="module")
def collection(tmp_path_factory, photo) -> Path:
    """40 distinct real-photo JPEGs (no OCR-heavy pages), enough for indexing to take a few batches."""
    folder = tmp_path_factory.mktemp("crash") / "collection"
    folder.mkdir()
    for name in BASES:
        for i, variant in enumerate(_variants(Image.open(photo(name)))):
            variant.save(folder / f"{name}-{i}.jpg", quality=90)
    files = sorted(folder.iterdir())
    assert len(files) == COLLECTION_SIZE
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files}) == COLLECTION_SIZE
    return folder


# -- helpers ---------------------------------------------------------------------------------------


def db_query(index: Path, sql: str):
    """One row from the index database through a read-only connection, or None if it is not there yet."""
    try:
        db = sqlite3.connect(f"{(index / DB_NAME).as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        return db.execute(sql).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()


def item_count(index: Path) -> int | None:
    row = db_query(index, "SELECT COUNT(*) FROM items")
    return row[0] if row else None


def index_created(index: Path) -> bool:
    return db_query(index, "SELECT value FROM meta WHERE key = 'config'") is not None


def start_indexing(folder: Path, index: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [MOAIR, "index", str(folder), "--index", str(index), "--json", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def wait_until(proc: subprocess.Popen, condition, log: Path, timeout: float = 120.0) -> None:
    """Poll until ``condition()`` holds; fail if the indexer exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"moair index exited ({proc.returncode}) before the kill point:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"kill point not reached in {timeout} s:\n{log.read_text()[-2000:]}")
        time.sleep(0.02)


def kill_9(proc: subprocess.Popen, may_have_finished: bool = False) -> bool:
    """SIGKILL ``proc``; True when the signal killed it. A process racing to its own end may instead
    have exited cleanly just before the signal, which only ``may_have_finished`` accepts."""
    os.kill(proc.pid, signal.SIGKILL)
    code = proc.wait(timeout=30)
    assert code == -signal.SIGKILL or (may_have_finished and code == 0), f"exit code {code}"
    return code == -signal.SIGKILL


def committed_paths(index: Path) -> set[str]:
    db = sqlite3.connect(f"{(index / DB_NAME).as_uri()}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        paths = {row[0] for row in db.execute("SELECT path FROM files")}
        assert db.execute("SELECT COUNT(*) FROM files WHERE item_id NOT IN (SELECT id FROM items)").fetchone() == (0,)
    finally:
        db.close()
    assert len(paths) == items  # every image in the collection has distinct content
    return paths


def saved_vectors(index: Path) -> int:
    """Vectors in the FAISS files the manifest names, each file checked to hold what it says."""
    manifest = json.loads(db_query(index, "SELECT value FROM meta WHERE key = 'vectors'")[0])
    for shard in manifest["shards"]:
        assert faiss.read_index(str(index / VECTORS / shard["file"])).ntotal == shard["count"]
    listed = {s["file"] for s in manifest["shards"]} | {manifest["trained_file"]}
    assert {p.name for p in (index / VECTORS).iterdir()} <= listed  # no leftover or temporary files
    return sum(s["count"] for s in manifest["shards"])


def shard_file(index: Path) -> Path:
    """The one shard file of a small index."""
    manifest = json.loads(db_query(index, "SELECT value FROM meta WHERE key = 'vectors'")[0])
    (shard,) = manifest["shards"]
    return index / VECTORS / shard["file"]


def snapshot_vectors(index: Path) -> tuple[dict[str, bytes], str]:
    """The FAISS files and the manifest row naming them."""
    return {p.name: p.read_bytes() for p in (index / VECTORS).iterdir()}, db_query(
        index, "SELECT value FROM meta WHERE key = 'vectors'"
    )[0]


def restore_vectors(index: Path, snapshot: tuple[dict[str, bytes], str]) -> None:
    """Put back FAISS files and manifest from an earlier moment: what a kill after SQLite's commit
    but before the FAISS save leaves."""
    files, manifest = snapshot
    shutil.rmtree(index / VECTORS)
    (index / VECTORS).mkdir()
    for name, data in files.items():
        (index / VECTORS / name).write_bytes(data)
    db = sqlite3.connect(index / DB_NAME)
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'vectors'", (manifest,))
    db.close()


def assert_readable(index: Path, folder: Path) -> set[str]:
    """The index opens read-only, FAISS agrees with SQLite, and every committed item is searchable."""
    committed = committed_paths(index)
    assert committed <= {str(p) for p in folder.iterdir()}
    with Engine.open(index) as engine:
        assert len(engine) == len(committed) and engine.store.verify() == []
        for path in committed:
            assert engine.inspect(path).paths == [path]
        hits = engine.search("an animal", k=5)
        assert len(hits) == min(5, len(committed))
        assert {h.path for h in hits} <= committed
        for path in sorted(committed)[:: max(1, len(committed) // 3)]:  # its own vector is in FAISS
            assert engine.search(image=path, k=1)[0].path == path
    return committed


# -- kill -9 while indexing ------------------------------------------------------------------------


def test_kill_9_during_indexing_loses_nothing_committed_and_resumes(collection, tmp_path):
    """``moair index`` is killed three times at different moments (right after the index is created,
    in the middle of a batch, right after a batch commit). Each time the committed items survive, the
    index opens with FAISS repaired from SQLite, a second writer is refused while the indexer runs, and
    the final run analyses only what was not committed."""
    index = tmp_path / "crash.moair"
    log = tmp_path / "moair.log"

    proc = start_indexing(collection, index, log)
    wait_until(proc, lambda: index_created(index), log)
    kill_9(proc)
    committed = assert_readable(index, collection)

    for settle in (0.3, 0.0):  # kill mid-way through the next batch, then right after a commit
        before = len(committed)
        proc = start_indexing(collection, index, log)
        wait_until(proc, lambda before=before: (item_count(index) or 0) > before, log)
        with pytest.raises(MoairError, match="another moair process"):
            Engine.open(index, create=True)
        time.sleep(settle)
        kill_9(proc)
        now = assert_readable(index, collection)
        assert now > committed  # nothing committed earlier was lost, and this run committed more
        committed = now
    assert len(committed) < COLLECTION_SIZE

    result = subprocess.run(
        [MOAIR, "index", str(collection), "--index", str(index), "--json", "-q"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == COLLECTION_SIZE - len(committed)
    assert report["unchanged"] == len(committed)
    assert (report["skipped"], report["interrupted"], report["items_in_index"]) == ([], False, COLLECTION_SIZE)

    assert assert_readable(index, collection) == {str(p) for p in collection.iterdir()}
    assert saved_vectors(index) == COLLECTION_SIZE  # the cache was saved whole


# -- damaged or stale FAISS cache ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, photo):
    """An index of four photos, with a copy of its FAISS file from before the last photo was added."""
    root = tmp_path_factory.mktemp("faiss")
    folder = root / "photos"
    folder.mkdir()
    for name in ("dog", "chelsea", "coffee"):
        shutil.copy2(photo(name), folder)
    index = root / "small.moair"
    with Engine.open(index, create=True) as engine:
        engine.add([folder])
    stale = shard_file(index).read_bytes()
    shutil.copy2(photo("giraffe"), folder)
    with Engine.open(index, create=True) as engine:
        assert engine.add([folder]).added == 1
        baseline = [(h.path, h.score) for h in engine.search("an animal", k=4)]
    return index, folder, stale, baseline


DAMAGE = {
    "deleted": lambda path, stale: path.unlink(),
    "empty": lambda path, stale: path.write_bytes(b""),
    "garbage": lambda path, stale: path.write_bytes(random.Random(7).randbytes(8192)),
    "garbage-after-real-header": lambda path, stale: path.write_bytes(
        path.read_bytes()[:40] + random.Random(7).randbytes(8192)
    ),
    "truncated": lambda path, stale: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "stale-missing-last-batch": lambda path, stale: path.write_bytes(stale),
    "valid-faiss-of-another-kind": lambda path, stale: faiss.write_index(
        faiss.IndexFlatIP(faiss.read_index(str(path)).d), str(path)
    ),
    "valid-faiss-with-l2-metric": lambda path, stale: faiss.write_index(
        faiss.index_factory(faiss.read_index(str(path)).d, "IDMap2,Flat", faiss.METRIC_L2), str(path)
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_faiss_cache_is_rebuilt_from_sqlite(damage, small_index, tmp_path):
    """With the FAISS file deleted, garbled, cut short or stale, the index still opens with every item
    and answers exactly as before; the next writer saves a repaired FAISS file."""
    source, folder, stale, baseline = small_index
    index = tmp_path / "copy.moair"
    shutil.copytree(source, index)
    DAMAGE[damage](shard_file(index), stale)

    with Engine.open(index) as engine:
        assert len(engine) == 4
        hits = engine.search("an animal", k=4)
        assert [h.path for h in hits] == [path for path, _ in baseline]
        assert [h.score for h in hits] == pytest.approx([score for _, score in baseline], abs=1e-3)
        for photo_file in folder.iterdir():
            assert engine.search(image=photo_file, k=1)[0].path == str(photo_file)

    Engine.open(index, create=True).close()
    assert saved_vectors(index) == 4


def index_then_prune_coffee(tmp_path, photo_dir):
    """Index dog, chelsea and coffee, delete coffee and prune it; returns (folder, index, the FAISS
    files and manifest saved before the prune)."""
    folder = photo_dir("dog", "chelsea", "coffee")
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True) as engine:
        engine.add([folder])
    before_prune = snapshot_vectors(index)
    (folder / "skimage-coffee.png").unlink()
    with Engine.open(index, create=True) as engine:
        assert engine.add([folder], prune=True).removed == 1
    return folder, index, before_prune


def test_stale_faiss_cache_with_a_deleted_item_is_repaired(tmp_path, photo_dir, photo):
    """A FAISS file saved before a photo was pruned (a kill between the commit and the save) must not
    bring the deleted photo back into results."""
    folder, index, before_prune = index_then_prune_coffee(tmp_path, photo_dir)
    restore_vectors(index, before_prune)

    with Engine.open(index) as engine:
        assert len(engine) == 2 and engine.store.tombstones_count() == 1
        hits = engine.search(image=photo("coffee"), k=5)
        assert sorted(h.path for h in hits) == sorted(str(p) for p in folder.iterdir())


def test_stale_faiss_cache_after_a_new_item_is_repaired(tmp_path, photo_dir, photo):
    """A pruning run killed between its last commit and the FAISS save leaves a cache that still holds
    the deleted item's vector. If the next run adds a new photo and is killed too, the new photo must
    still be found by its own image (added from SQLite), and the deleted photo must not be found under
    the new photo's path (vector ids are never reused)."""
    # coffee is indexed last (the highest item id); a kill -9 before the prune's FAISS save leaves cache_before_prune
    folder, index, cache_before_prune = index_then_prune_coffee(tmp_path, photo_dir)
    shutil.copy2(photo("horses"), folder)
    with Engine.open(index, create=True) as engine:
        engine.add([folder])  # and again here, after the commit
    restore_vectors(index, cache_before_prune)  # what both kills would have left

    with Engine.open(index) as engine:
        assert len(engine) == 3
        horses = str(folder / "darknet-horses.jpg")
        assert engine.search(image=horses, k=1)[0].path == horses
        assert horses not in [h.path for h in engine.search(image=photo("coffee"), k=1)]


# A kill after the schema is written but before the configuration row, caught by SQLite's trace hook.
KILL_BEFORE_CONFIG = """
import os, signal, sys
import indexer.store.catalog as store

connect = store._connect

def connect_then_die_before_config(path):
    db = connect(path)
    db.set_trace_callback(lambda sql: "INSERT INTO META" in sql.upper() and os.kill(os.getpid(), signal.SIGKILL))
    return db

store._connect = connect_then_die_before_config
from retriever import Engine
Engine.open(sys.argv[1], create=True)
"""


def test_kill_9_while_creating_an_index_leaves_a_path_that_can_be_created_again(tmp_path, photo_dir):
    index = tmp_path / "new.moair"
    died = subprocess.run([sys.executable, "-c", KILL_BEFORE_CONFIG, str(index)], check=False, timeout=120)
    assert died.returncode == -signal.SIGKILL
    assert index.is_dir()  # the kill hit mid-creation, not before it

    with pytest.raises(MoairError, match="not a moair index"):
        Engine.open(index)
    folder = photo_dir("dog")
    with Engine.open(index, create=True) as engine:
        assert engine.add([folder]).added == 1
    with Engine.open(index) as engine:
        assert engine.search("a dog", k=1)[0].path == str(folder / "darknet-dog.jpg")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_database_is_refused_with_a_clear_message(damage, small_index, tmp_path):
    """SQLite is the source of truth: when it is damaged, moair refuses the index (exit 2, one line
    saying to restore a backup) rather than guessing, and leaves the files as they were."""
    source, _, _, _ = small_index
    index = tmp_path / "broken.moair"
    shutil.copytree(source, index)
    database = index / DB_NAME
    data = database.read_bytes()
    database.write_bytes(
        data[:100] + random.Random(3).randbytes(len(data) - 100) if damage == "garbage" else data[: len(data) * 3 // 5]
    )
    before = database.read_bytes()
    for command in (["search", "a dog"], ["stats"], ["index", str(tmp_path)]):
        result = subprocess.run([MOAIR, *command, "--index", str(index)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (command, result.stderr)
        assert "restore it from a backup" in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert database.read_bytes() == before


# -- one writer at a time ------------------------------------------------------------------------


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path, photo_dir):
    """While one writer is open a second is refused (and keeps being refused); readers may open; once
    the writer closes, a new writer gets in."""
    folder = photo_dir("dog")
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True) as first:
        for _ in range(2):
            with pytest.raises(MoairError, match="another moair process"):
                Engine.open(index, create=True)
        assert first.add([folder]).added == 1  # the refused attempts did not disturb the lock holder
        with Engine.open(index) as reader:
            assert len(reader) == 1
    with Engine.open(index, create=True) as second:
        assert len(second) == 1


def test_refused_write_leaves_a_reader_usable(tmp_path, photo_dir):
    """A read-only engine whose ``add`` is refused because another process writes gets a clear error
    and can still search."""
    folder = photo_dir("dog", "chelsea")
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True) as writer:
        writer.add([folder / "darknet-dog.jpg"])
        with Engine.open(index) as reader:
            with pytest.raises(MoairError, match="another moair process"):
                reader.add([folder])
            assert reader.search("a dog", k=1)[0].path == str(folder / "darknet-dog.jpg")


def test_cli_second_writer_gets_a_clear_error(tmp_path, photo_dir):
    """``moair index`` against an index another process is writing: exit 2, one error line."""
    folder = photo_dir("dog")
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True):
        result = subprocess.run(
            [MOAIR, "index", str(folder), "--index", str(index), "-q"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert "another moair process" in result.stderr and "Traceback" not in result.stderr


# -- kill -9 at random moments -------------------------------------------------------------------

# Adds and removes text entries as the plan says, announcing each removal before committing it;
# writes "ready" on stdout once the index is open and the models loaded, when the work begins.
KILL_DRIVER = """
import json, sys
from indexer.records import Entry
from retriever import Engine

index, plan_file, log_file = sys.argv[1:4]
plan = json.loads(open(plan_file).read())
with open(log_file, "a") as log, Engine.open(index, create=True) as engine:
    engine.configure(index_type=plan["index_type"], shard_size=plan["shard_size"])
    engine.analyzer.require_working_models()
    print("ready", flush=True)
    for step in plan["steps"]:
        if step["remove"]:
            log.write(" ".join(step["remove"]) + "\\n")
            log.flush()
            engine.remove(step["remove"])
        engine.add_entries([Entry(key=key, text=text) for key, text in step["add"]])
"""
KILLS = 20
INDEX_TYPES = ("auto", "IVF16,SQ8", "HNSW16", "IVF8,SQ6")


def committed_keys(index: Path) -> set[str]:
    db = sqlite3.connect(f"{(index / DB_NAME).as_uri()}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {row[0] for row in db.execute("SELECT path FROM files")}
    finally:
        db.close()


def test_kill_9_at_random_moments_loses_nothing_committed(tmp_path):
    """A real indexing process (adding and removing entries, switching index types, so rebuilds,
    compactions and FAISS saves all happen) is killed at random moments until it has been killed
    at least 20 times. After every kill: nothing committed before is lost except what that run
    announced it would remove, nothing appears that was never added, FAISS agrees with SQLite, and
    committed items are found through FAISS by their own vectors."""
    rng = random.Random(2026)
    pool = {
        f"k{i}": f"a {c} {t} {p}"
        for i, (c, t, p) in enumerate(
            (c, t, p)
            for p in ("in a park", "on a beach", "in the snow", "at night", "in a kitchen", "on a road")
            for t in ("bicycle", "car", "dog", "cat", "kite", "boat", "horse", "chair", "train", "bench")
            for c in ("red", "blue", "green", "yellow", "black", "white", "orange", "purple")
        )
    }
    index, log = tmp_path / "random.moair", tmp_path / "removed.log"
    kills, runs, kills_mid_work = 0, 0, 0
    # How long uncut runs took from "ready" to their end: most kill points are drawn from within
    # that (the work), the others from the start (opening the index and the models, whose length
    # varies with the machine's load far more than the work's does).
    work_seconds: list[float] = []
    committed: set[str] = set()
    while kills < KILLS or kills_mid_work < KILLS // 2:
        assert runs < 4 * KILLS, f"only {kills} kills landed in {runs} runs ({kills_mid_work} mid-work)"
        runs += 1
        present = sorted(committed)
        steps = [
            {
                "remove": rng.sample(present, min(len(present), rng.randint(0, 12))) if step else [],
                "add": [(key, pool[key]) for key in rng.sample(sorted(pool), 30)],
            }
            for step in range(4)
        ]
        plan = {"index_type": INDEX_TYPES[runs % len(INDEX_TYPES)], "shard_size": 64, "steps": steps}
        plan_file = tmp_path / f"plan-{runs}.json"
        plan_file.write_text(json.dumps(plan))
        log.write_text("")
        with open(tmp_path / "driver.err", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", KILL_DRIVER, str(index), str(plan_file), str(log)],
                stdout=subprocess.PIPE,
                stderr=err,
            )
        try:
            if rng.random() < 0.25:
                proc.wait(timeout=rng.uniform(0.2, 6.0))
            else:
                assert proc.stdout.readline() == b"ready\n", (tmp_path / "driver.err").read_text()[-2000:]
                ready = time.monotonic()
                proc.wait(timeout=rng.uniform(0.0, statistics.median(work_seconds) if work_seconds else 3.0))
                work_seconds.append(time.monotonic() - ready)
            assert proc.returncode == 0, (proc.returncode, (tmp_path / "driver.err").read_text()[-2000:])
        except subprocess.TimeoutExpired:
            if kill_9(proc, may_have_finished=True):
                kills += 1
                kills_mid_work += index_created(index) and committed_keys(index) != committed
        proc.stdout.close()
        if not index_created(index):
            continue
        now = committed_keys(index)
        announced = {key for line in log.read_text().split("\n") for key in line.split()}
        added = {key for step in steps for key, _ in step["add"]}
        assert committed - announced <= now, (
            f"run {runs}: committed entries lost: {sorted(committed - announced - now)}"
        )
        assert now <= committed | added, f"run {runs}: entries that were never added: {sorted(now - committed - added)}"
        with Engine.open(index) as engine:
            assert engine.store.verify() == [], f"run {runs}"
            assert len(engine) == len(now)
            for key in rng.sample(sorted(now), min(5, len(now))):  # found through FAISS by its own vector
                item_id = engine.inspect(key).item_id
                found = top_k(engine.store, engine.store.item_vectors([item_id]), k=3)[1][0]
                shown = {"index_type", "search_knob", "tombstones", "items", "shards", "recall_estimate", "tuned_items"}
                assert item_id in found, f"run {runs}: {key} {engine.stats().model_dump(include=shown)}"
        committed = now
    print(f"{kills} kills in {runs} runs, {kills_mid_work} after the run had changed the index")

    final = {"index_type": "auto", "shard_size": 64, "steps": [{"remove": [], "add": sorted(pool.items())}]}
    (tmp_path / "final.json").write_text(json.dumps(final))
    subprocess.run(
        [sys.executable, "-c", KILL_DRIVER, str(index), str(tmp_path / "final.json"), str(log)], check=True, timeout=600
    )
    assert committed_keys(index) == set(pool)
    assert saved_vectors(index) >= len(pool)  # every live vector saved; no leftover or temporary files
    with Engine.open(index) as engine:
        assert engine.store.verify() == [] and len(engine) == len(pool)
