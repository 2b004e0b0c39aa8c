"""Damaged index files (issue 15): each kind of damage is said in one line, found by `moair
verify`, and the vector files, a cache of the database, are rebuilt from it.

The damage is done to copies of the real sample-photo index: random bytes inside a FAISS shard
(which still parses), inside SQLite pages, in the configuration row, and a file where the vectors
folder should be.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.errors import DamagedIndex
from indexer.shards import FOLDER as VECTORS_FOLDER
from indexer.store import DB_NAME
from retriever import Engine

MOAIR = str(Path(sys.executable).parent / "moair")
QUERIES = ("a dog", "a cat", "coffee", "a rocket", "고양이")


def moair(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MOAIR, *map(str, args)], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def one_error_line(run: subprocess.CompletedProcess, says: str) -> None:
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip() and not line.startswith("INFO")]
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], run.stderr


@pytest.fixture
def damaged_copy(tmp_path, sample_index) -> Path:
    index = tmp_path / "copy.moair"
    shutil.copytree(sample_index, index)
    return index


def rankings(index: Path) -> list[list[tuple[int, float]]]:
    with Engine.open(index) as engine:
        return [[(h.item_id, round(h.score, 4)) for h in engine.search(q, k=20)] for q in QUERIES]


def test_random_bytes_in_a_vector_file_are_found_by_checksum_and_rebuilt(damaged_copy, sample_index, samples):
    (shard,) = sorted((damaged_copy / VECTORS_FOLDER).glob("shard-*.faiss"))
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2  # inside the stored vectors: the file still parses, one vector is now noise
    data[middle : middle + 2048] = random.Random(5).randbytes(2048)
    shard.write_bytes(bytes(data))
    assert rankings(damaged_copy) == rankings(sample_index)  # rebuilt from SQLite at open, in memory
    report = json.loads(moair("verify", "--index", damaged_copy, "--json").stdout)
    assert report["problems"] == [] and report["saved"] is False
    assert report["repaired"] == [f"{shard.name}: its bytes changed since it was written (checksum mismatch)"]
    assert moair("index", samples, "--index", damaged_copy, "-q").returncode == 0  # a writer saves the repair
    run = moair("verify", "--index", damaged_copy, "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["repaired"] == []
    assert rankings(damaged_copy) == rankings(sample_index)


def test_random_bytes_in_the_database_are_said_in_one_line_and_listed_by_verify(damaged_copy, samples):
    database = damaged_copy / DB_NAME
    with open(database, "r+b") as f:  # one page of the files table: the index still opens
        f.seek(7 * 4096 + 100)
        f.write(random.Random(8).randbytes(3000))
    one_error_line(
        moair("index", samples, "--index", damaged_copy), "is damaged (SQLite: database disk image is malformed)"
    )
    run = moair("verify", "--index", damaged_copy)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "problem SQLite:" in run.stderr and "restore the index from a backup" in run.stdout
    with Engine.open(damaged_copy) as engine:
        with pytest.raises(DamagedIndex, match="moair verify"):
            engine.add([samples])


def test_a_damaged_configuration_row_is_said(damaged_copy):
    database = damaged_copy / DB_NAME
    with sqlite3.connect(database) as db:
        config = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0]
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (config[: len(config) // 2],))
    one_error_line(moair("search", "--index", damaged_copy, "a dog"), "its configuration row is damaged")
    wrong = json.loads(config)
    wrong["layout"]["blocks"] = wrong["layout"]["blocks"][:-1]  # parses, but describes other vectors
    with sqlite3.connect(database) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (json.dumps(wrong),))
    one_error_line(
        moair("search", "--index", damaged_copy, "a dog"), "its configuration row does not match the stored vectors"
    )


def test_a_file_where_the_vectors_folder_should_be_is_said(damaged_copy, sample_index):
    shutil.rmtree(damaged_copy / VECTORS_FOLDER)
    (damaged_copy / VECTORS_FOLDER).write_text("not a folder")
    one_error_line(
        moair("search", "--index", damaged_copy, "a dog"), "should be the folder of the vector files but is a file"
    )
    (damaged_copy / VECTORS_FOLDER).unlink()  # moved away, as the message says: rebuilt from the database
    assert rankings(damaged_copy) == rankings(sample_index)
