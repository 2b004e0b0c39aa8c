"""The SQLite half of an index, the source of truth: items (one per distinct content: perception,
verbalizations, the vector as its encoders gave it, and its vector id), files (path -> item,
size, mtime), skipped (files not indexed, why, and whether for their bytes or for a failure to
read or analyse them) and meta (the configuration, the vector manifest, the vector id counter).
SQL only: nothing here knows FAISS or the projection heads."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationError

from indexer.errors import DamagedIndex, MoairError, damaged_database, disk_full
from indexer.records import ItemRecord, Perception, Verbalization
from indexer.shards import VectorManifest, durable_replace
from indexer.store.config import IndexConfig
from indexer.store.formats import (
    LEGACY_SKIP_KIND,
    SCHEMA_VERSION,
    NewerFormat,
    complete_format_1,
    upgrade_tables,
    upgraded_config,
)

DB_NAME = "moair.sqlite"
BUILDING_SUFFIX = ".building"
READ_CHUNK = 4096  # vectors read at a time

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    content_hash TEXT NOT NULL UNIQUE,
    perception TEXT NOT NULL,
    verbalization TEXT NOT NULL,
    expert_versions TEXT NOT NULL,
    vector BLOB NOT NULL,
    added_at REAL NOT NULL,
    modality TEXT NOT NULL DEFAULT 'image',  -- image, text or image,text
    -- the vector's id in FAISS: new for every new vector, never reused
    vector_id INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS items_by_vector ON items(vector_id);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_item ON files(item_id);
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    -- content: the bytes are bad (remembered until the file changes); access, analysis: the file
    -- could not be read or analysed (an environment fault: tried again on the next run)
    kind TEXT NOT NULL DEFAULT 'content'
);
"""
SkipKind = Literal["content", "access", "analysis"]
RETRIED_KINDS = ("access", "analysis")
# How indexes made before skip kinds tell them apart: by the reason's wording.


@dataclass
class NewItem:
    """An analysed image on its way into the store (new content, or known content re-analysed)."""

    content_hash: str
    perception: Perception
    verbalization: Verbalization
    vector: np.ndarray
    versions: dict[str, str]  # what produced it: expert and encoder versions
    modality: str = "image"


@dataclass
class FileEntry:
    path: str
    size: int
    mtime_ns: int
    content_hash: str


@dataclass
class Batch:
    """One batch of changes, committed in one transaction: analysed items, the files (or entry
    keys) that point at them, paths gone from the collection, and files not indexed."""

    new_items: Sequence[NewItem] = ()
    files: Sequence[FileEntry] = ()
    removed_paths: Iterable[str] = ()
    skipped: Sequence[SkippedFile] = ()


@dataclass
class FileState:
    size: int
    mtime_ns: int


@dataclass
class SkippedFile:
    """A file or entry that is not indexed, and why."""

    path: str
    size: int
    mtime_ns: int
    reason: str
    kind: SkipKind = "content"

    @property
    def retried(self) -> bool:
        """Whether the next run tries it again (it failed for a reason other than its bytes)."""
        return self.kind in RETRIED_KINDS


class Catalog:
    """One index's SQLite database. Readers share it; a writer holds the index's lock (taken by
    ``indexer.store.Store``)."""

    def __init__(self, folder: Path, db: sqlite3.Connection, dim: int) -> None:
        self.file = folder / DB_NAME
        self.dim = dim
        self._db = db
        # An index made before items could be texts has no modality column (all its items are
        # images), one made before vector ids uses item ids; a writer adds the columns on open,
        # a reader reads the old ones.
        columns = {c[1] for c in db.execute("PRAGMA table_info(items)")}
        self._modality_column = "modality" if "modality" in columns else "'image'"
        self._vector_column = "vector_id" if "vector_id" in columns else "id"
        skip_columns = {c[1] for c in db.execute("PRAGMA table_info(skipped)")}
        self._skip_kind_column = "kind" if "kind" in skip_columns else LEGACY_SKIP_KIND

    @staticmethod
    def create(folder: Path, config: IndexConfig) -> None:
        """Write a new database holding ``config`` into ``folder``: built under a temporary name and
        renamed into place, so a kill mid-creation never leaves a database without its
        configuration (one that could not be opened)."""
        building = folder / (DB_NAME + BUILDING_SUFFIX)
        db = _connect(building)
        with db:
            db.executescript(SCHEMA)
            db.execute("INSERT INTO meta VALUES ('config', ?)", (config.model_dump_json(),))
            db.execute("INSERT INTO meta VALUES ('next_vector_id', '1')")
        db.execute("PRAGMA journal_mode=DELETE")  # fold the WAL into the file before renaming it
        db.close()
        durable_replace(building, folder / DB_NAME)

    @classmethod
    def open(cls, folder: Path, writable: bool) -> tuple[Catalog, IndexConfig]:
        """The database of the index in ``folder`` and its configuration; read-only unless
        ``writable`` (a writer upgrades an older schema)."""
        file = folder / DB_NAME
        try:
            db = _connect(file) if writable else _connect_read_only(file)
            row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
            stored = db.execute("SELECT length(vector) FROM items LIMIT 1").fetchone()
        except sqlite3.DatabaseError as e:
            if disk_full(e):
                raise MoairError(f"the disk holding {folder} is full: free space and try again") from None
            raise damaged_database(file, e) from None
        if row is None:
            raise MoairError(f"{folder} is not a moair index (its database has no configuration)")
        try:
            raw, found = upgraded_config(row[0])
            config = IndexConfig.model_validate(raw)
        except NewerFormat as e:
            db.close()
            raise MoairError(
                f"{folder} uses index format {e.args[0]}, made by a newer moair; this moair reads formats "
                f"up to {SCHEMA_VERSION}"
            ) from None
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # pydantic's ValidationError is a ValueError
            db.close()
            why = e.errors()[0]["msg"] if isinstance(e, ValidationError) else f"{type(e).__name__}: {e}"
            raise DamagedIndex(f"{file}: its configuration row is damaged ({why}); restore it from a backup") from None
        if stored and stored[0] != config.layout.dim * 4:
            db.close()
            raise DamagedIndex(
                f"{file}: its configuration row does not match the stored vectors ({config.layout.dim} numbers "
                f"each by the configuration, {stored[0] // 4} stored); restore it from a backup"
            )
        if writable:
            try:
                with db:
                    complete_format_1(db)
                    if found < SCHEMA_VERSION:
                        upgrade_tables(db, found)
                        db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (config.model_dump_json(),))
            except sqlite3.DatabaseError as e:
                db.close()
                raise damaged_database(file, e) from None
        return cls(folder, db, config.layout.dim), config

    def close(self) -> None:
        self._db.close()

    # -- meta ------------------------------------------------------------------------------------
    def manifest(self) -> VectorManifest | None:
        """The vector manifest last committed (None before the first save)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'vectors'").fetchone()
        return VectorManifest.model_validate_json(row[0]) if row else None

    def save_manifest(self, manifest: VectorManifest, config: IndexConfig | None = None) -> None:
        """Commit ``manifest`` (and a new ``config`` with it, when given) in one transaction."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('vectors', ?)", (manifest.model_dump_json(),))
            if config is not None:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (config.model_dump_json(),))

    # -- vectors ---------------------------------------------------------------------------------
    def live_vector_ids(self) -> np.ndarray:
        """The vector ids of every item, in the table's order."""
        rows = self._db.execute(f"SELECT {self._vector_column} FROM items").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vector_chunks(self, vector_ids: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vector ids, vectors as stored) in chunks: of those given that are live, or of every one."""
        if vector_ids is None:
            vector_ids = np.sort(self.live_vector_ids())
        for start in range(0, len(vector_ids), READ_CHUNK):
            ids = [int(i) for i in vector_ids[start : start + READ_CHUNK]]
            marks = ",".join("?" * len(ids))
            found = dict(
                self._db.execute(
                    f"SELECT {self._vector_column}, vector FROM items WHERE {self._vector_column} IN ({marks})", ids
                )
            )
            ids = [i for i in ids if i in found]
            if ids:
                yield (
                    np.array(ids, np.int64),
                    np.stack([np.frombuffer(found[i], np.float32, count=self.dim) for i in ids]),
                )

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of items ``ids``, in that order."""
        if not ids:
            return np.zeros((0, self.dim), np.float32)
        marks = ",".join("?" * len(ids))
        found = dict(self._db.execute(f"SELECT id, vector FROM items WHERE id IN ({marks})", list(ids)))
        return np.stack([np.frombuffer(found[i], dtype=np.float32, count=self.dim) for i in ids])

    def item_ids(self, vector_ids: np.ndarray) -> np.ndarray:
        """The item id of each vector id (-1 for one that is not live), in the same shape."""
        wanted = sorted({int(i) for i in vector_ids.ravel() if i >= 0})
        marks = ",".join("?" * len(wanted))
        known = (
            dict(
                self._db.execute(
                    f"SELECT {self._vector_column}, id FROM items WHERE {self._vector_column} IN ({marks})", wanted
                )
            )
            if wanted
            else {}
        )
        return (
            np.vectorize(lambda v: known.get(int(v), -1), otypes=[np.int64])(vector_ids)
            if vector_ids.size
            else vector_ids
        )

    def vector_ids_with_modality(self, modality: str) -> np.ndarray:
        """Vector ids of the items holding ``modality`` (image, text or image,text)."""
        rows = self._db.execute(
            f"SELECT {self._vector_column} FROM items WHERE {self._modality_column} = ?", (modality,)
        )
        return np.array([row[0] for row in rows], dtype=np.int64)

    # -- reading ---------------------------------------------------------------------------------

    def file_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def files_under(self, root: Path) -> dict[str, FileState]:
        """Indexed files at or below ``root`` (an absolute path)."""
        rows = self._db.execute(f"SELECT path, size, mtime_ns FROM files WHERE {_AT_OR_BELOW}", _at_or_below(root))
        return {path: FileState(size, mtime) for path, size, mtime in rows}

    def skipped_under(self, root: Path) -> list[str]:
        """Paths at or below ``root`` remembered as bad files."""
        return [
            row[0] for row in self._db.execute(f"SELECT path FROM skipped WHERE {_AT_OR_BELOW}", _at_or_below(root))
        ]

    def file_state(self, path: str) -> FileState | None:
        row = self._db.execute(f"SELECT size, mtime_ns FROM files WHERE path = {PATH}", (path_bytes(path),)).fetchone()
        return FileState(*row) if row else None

    def content_hashes(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT content_hash FROM items")}

    def skipped_state(self, path: str) -> SkippedFile | None:
        row = self._db.execute(
            f"SELECT path, size, mtime_ns, reason, {self._skip_kind_column} FROM skipped WHERE path = {PATH}",
            (path_bytes(path),),
        ).fetchone()
        return SkippedFile(*row) if row else None

    def stale_items(self, versions: dict[str, str]) -> dict[str, str]:
        """Items analysed by other expert or encoder versions than ``versions``: content hash ->
        one of the item's file paths (the one to re-analyse)."""
        rows = self._db.execute(
            "SELECT i.content_hash, MIN(f.path) FROM items i JOIN files f ON f.item_id = i.id"
            " WHERE i.expert_versions != ? GROUP BY i.id",
            (_versions_json(versions),),
        )
        return dict(rows)

    def holds(self, modality: str) -> bool:
        """Whether any item holds exactly ``modality`` (image, text or image,text)."""
        row = self._db.execute(f"SELECT 1 FROM items WHERE {self._modality_column} = ? LIMIT 1", (modality,)).fetchone()
        return row is not None

    def item_id_for_hash(self, content_hash: str) -> int | None:
        row = self._db.execute("SELECT id FROM items WHERE content_hash = ?", (content_hash,)).fetchone()
        return row[0] if row else None

    def paths_of(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` (file paths or entry keys) that are indexed or remembered as bad."""
        found = []
        for key in keys:
            found_in = f"SELECT 1 FROM files WHERE path = {PATH} UNION ALL SELECT 1 FROM skipped WHERE path = {PATH}"
            if self._db.execute(found_in, (path_bytes(key),) * 2).fetchone():
                found.append(key)
        return found

    def item_id_for_path(self, path: str) -> int | None:
        row = self._db.execute(f"SELECT item_id FROM files WHERE path = {PATH}", (path_bytes(path),)).fetchone()
        return row[0] if row else None

    def items(self, ids: Sequence[int]) -> list[ItemRecord]:
        """The stored records of those of ``ids`` that exist, in the order given."""
        ids = [i for i in ids if 0 <= i < 2**63]  # SQLite's ids are int64: others cannot exist
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = {
            row[0]: row
            for row in self._db.execute(
                f"SELECT id, content_hash, perception, verbalization, expert_versions, {self._modality_column}"
                f" FROM items WHERE id IN ({marks})",
                list(ids),
            )
        }
        paths: dict[int, list[str]] = {}
        for item_id, path in self._db.execute(
            f"SELECT item_id, path FROM files WHERE item_id IN ({marks}) ORDER BY path", list(ids)
        ):
            paths.setdefault(item_id, []).append(path)
        return [
            ItemRecord(
                item_id=i,
                paths=paths.get(i, []),
                content_hash=rows[i][1],
                perception=Perception.model_validate_json(rows[i][2]),
                verbalization=Verbalization.model_validate_json(rows[i][3]),
                expert_versions=json.loads(rows[i][4]),
                modality=rows[i][5],
            )
            for i in ids
            if i in rows
        ]

    def items_by_modality(self) -> dict[str, int]:
        return dict(self._db.execute(f"SELECT {self._modality_column}, COUNT(*) FROM items GROUP BY 1"))

    def skip_counts(self) -> dict[str, int]:
        by_kind = dict(self._db.execute(f"SELECT {self._skip_kind_column}, COUNT(*) FROM skipped GROUP BY 1"))
        failed = sum(by_kind.get(kind, 0) for kind in RETRIED_KINDS)
        return {"skipped": sum(by_kind.values()), "bad_files": sum(by_kind.values()) - failed, "failed": failed}

    def problems(self) -> list[str]:
        """What is wrong with the database (empty when nothing): SQLite's integrity check, then
        every item's vector and descriptions well formed."""
        problems = []
        try:
            for (line,) in self._db.execute("PRAGMA integrity_check(20)"):
                problems += [f"SQLite: {part}" for part in line.splitlines() if part != "ok"]
        except sqlite3.DatabaseError as e:
            problems.append(f"SQLite: {e}")
        if problems:
            return problems  # the check below reads the damaged tables
        bad_rows = self._db.execute(
            "SELECT COUNT(*) FROM items WHERE length(vector) != ? OR NOT json_valid(perception) OR NOT "
            "json_valid(verbalization)",
            (self.dim * 4,),
        ).fetchone()[0]
        if bad_rows:
            problems.append(f"{bad_rows} item(s) with a vector of the wrong length or descriptions that are not JSON")
        return problems

    # -- writing ---------------------------------------------------------------------------------
    def commit(self, batch: Batch) -> tuple[list[int], list[int]]:
        """Apply ``batch`` in a single transaction; returns the vector ids given to the
        new items (in their order) and those no longer live. An item whose content is already
        stored gets the new analysis and a new vector id, keeping its item id; its old vector id
        is no longer live, as are those of items no file points at any more."""
        now = time.time()
        dead: list[int] = []
        with self._db:
            next_vector_id = int(self._db.execute("SELECT value FROM meta WHERE key = 'next_vector_id'").fetchone()[0])
            added_vector_ids = []
            for item in batch.new_items:
                values = (
                    item.perception.model_dump_json(),
                    item.verbalization.model_dump_json(),
                    _versions_json(item.versions),
                    np.ascontiguousarray(item.vector, dtype=np.float32).tobytes(),
                    now,
                    item.modality,
                    next_vector_id,
                )
                old = self._db.execute(
                    "SELECT vector_id FROM items WHERE content_hash = ?", (item.content_hash,)
                ).fetchone()
                if old is None:
                    self._db.execute(
                        "INSERT INTO items (perception, verbalization, expert_versions, vector, added_at, modality,"
                        " vector_id, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (*values, item.content_hash),
                    )
                else:
                    self._db.execute(
                        "UPDATE items SET perception = ?, verbalization = ?, expert_versions = ?, vector = ?,"
                        " added_at = ?, modality = ?, vector_id = ? WHERE content_hash = ?",
                        (*values, item.content_hash),
                    )
                    dead.append(old[0])
                added_vector_ids.append(next_vector_id)
                next_vector_id += 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_vector_id'", (str(next_vector_id),))
            for entry in batch.files:
                item_id = self.item_id_for_hash(entry.content_hash)
                self._db.execute(
                    f"INSERT OR REPLACE INTO files (path, item_id, size, mtime_ns) VALUES ({PATH}, ?, ?, ?)",
                    (path_bytes(entry.path), item_id, entry.size, entry.mtime_ns),
                )
                self._db.execute(f"DELETE FROM skipped WHERE path = {PATH}", (path_bytes(entry.path),))
            for path in batch.removed_paths:
                self._db.execute(f"DELETE FROM files WHERE path = {PATH}", (path_bytes(path),))
                self._db.execute(f"DELETE FROM skipped WHERE path = {PATH}", (path_bytes(path),))
            self._db.executemany(
                f"INSERT OR REPLACE INTO skipped (path, size, mtime_ns, reason, kind) VALUES ({PATH}, ?, ?, ?, ?)",
                [(path_bytes(s.path), s.size, s.mtime_ns, s.reason, s.kind) for s in batch.skipped],
            )
            orphans = self._db.execute(
                "SELECT id, vector_id FROM items WHERE id NOT IN (SELECT item_id FROM files)"
            ).fetchall()
            if orphans:
                self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i, _ in orphans])
                dead += [v for _, v in orphans]
        return added_vector_ids, dead


# A file name is any bytes but NUL and "/", not always UTF-8 (archives, cameras, other systems):
# Python holds the bytes that are not UTF-8 as lone surrogates ("surrogateescape"), and SQLite's
# TEXT holds the bytes themselves. So a path is bound as its bytes, cast to TEXT, and read back
# by a text factory that undoes the escape; equality and ordering stay byte-wise.
PATH = "CAST(? AS TEXT)"
_AT_OR_BELOW = f"path = {PATH} OR substr(CAST(path AS BLOB), 1, ?) = ?"


def path_bytes(path: str) -> bytes:
    """``path`` as the bytes the store keeps (bind it with ``PATH``)."""
    return path.encode("utf-8", "surrogateescape")


def _at_or_below(root: Path) -> tuple[bytes, int, bytes]:
    prefix = path_bytes(str(root).rstrip("/") + "/")
    return path_bytes(str(root)), len(prefix), prefix


def _reading_paths(db: sqlite3.Connection) -> sqlite3.Connection:
    db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    return db


def _versions_json(versions: dict[str, str]) -> str:
    return json.dumps(versions, sort_keys=True)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes. In a folder that cannot be written, SQLite cannot make the
    shared-memory file a WAL database needs, so it reads the database file as immutable: correct
    when no write-ahead log is left over (a writer that closed cleanly folds it in)."""
    uri = f"file:{urllib.parse.quote(os.fsencode(path.absolute()))}?mode=ro"
    if not os.access(path.parent, os.W_OK):
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise MoairError(
                f"{path.parent} is read-only and holds a write-ahead log of changes not folded into the database "
                "(a writer was stopped); open it once where it can be written"
            )
        uri += "&immutable=1"
    return _reading_paths(sqlite3.connect(uri, uri=True, check_same_thread=False))


def _connect(path: Path) -> sqlite3.Connection:
    db = _reading_paths(sqlite3.connect(path, check_same_thread=False))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db
