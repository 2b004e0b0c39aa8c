"""The index format ladder: each step brings an index's database from one numbered format to the
next. A step has two halves: one rewrites the configuration row (a pure function of its JSON, so
a reader applies it in memory and reads an older index as it is), the other changes the tables
(only a writer applies it, with the new configuration row, in one transaction).

To change the format: add a step at the end of ``UPGRADES`` (``SCHEMA_VERSION`` follows), with a
test that opens an index of the format before.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, NamedTuple

Config = dict[str, Any]  # a configuration row, as its JSON holds it

LEGACY_SKIP_KIND = "CASE WHEN reason LIKE 'analysis failed:%' THEN 'analysis' ELSE 'content' END"


class NewerFormat(Exception):
    """An index made by a newer moair: ``args[0]`` is its format."""


def _unchanged(db: sqlite3.Connection) -> None:
    pass


class Upgrade(NamedTuple):
    config: Callable[[Config], Config]
    tables: Callable[[sqlite3.Connection], None] = _unchanged


def complete_format_1(db: sqlite3.Connection) -> None:
    """Format 1 grew columns before formats were numbered, so a writer adds any an index lacks on
    every open (the modality column, vector ids equal to item ids as the old FAISS file used, the
    vector id counter, the kind of each skip: an "analysis failed" skip becomes one the next run
    retries)."""
    columns = {c[1] for c in db.execute("PRAGMA table_info(items)")}
    if "kind" not in {c[1] for c in db.execute("PRAGMA table_info(skipped)")}:
        db.execute("ALTER TABLE skipped ADD COLUMN kind TEXT NOT NULL DEFAULT 'content'")
        db.execute(f"UPDATE skipped SET kind = {LEGACY_SKIP_KIND}")
    if "modality" not in columns:  # indexes made before items could be texts hold images only
        db.execute("ALTER TABLE items ADD COLUMN modality TEXT NOT NULL DEFAULT 'image'")
    if "vector_id" not in columns:
        db.execute("ALTER TABLE items ADD COLUMN vector_id INTEGER")
        db.execute("UPDATE items SET vector_id = id")
        db.execute("CREATE UNIQUE INDEX IF NOT EXISTS items_by_vector ON items(vector_id)")
    if db.execute("SELECT 1 FROM meta WHERE key = 'next_vector_id'").fetchone() is None:
        last = db.execute("SELECT MAX(seq) FROM sqlite_sequence WHERE name = 'items'").fetchone()[0] or 0
        db.execute("INSERT INTO meta VALUES ('next_vector_id', ?)", (str(last + 1),))


def _plugins_as_specs(config: Config) -> Config:
    """Format 2 records every plug-in as one ``PluginSpec`` (name, options, version); format 1 had
    three shapes (names, a backbone's options and version beside it, experts' versions and
    options in two maps)."""
    config = dict(config)
    expert_options = config.pop("expert_options", {})
    config["text_embedder"] = {"name": config["text_embedder"]}
    config["backbone"] = {
        "name": config["backbone"],
        "options": config.pop("backbone_options", {}),
        "version": config.pop("backbone_version", ""),
    }
    config["experts"] = [
        {"name": name, "options": expert_options.get(name, {}), "version": version}
        for name, version in config["experts"].items()
    ]
    return config


UPGRADES: list[Upgrade] = [  # UPGRADES[n - 1] brings format n to format n + 1
    Upgrade(config=_plugins_as_specs),
]
SCHEMA_VERSION = len(UPGRADES) + 1  # the format this moair writes


def upgraded_config(stored: str) -> tuple[Config, int]:
    """The configuration row ``stored`` brought to this moair's format, and the format it was in.
    Raises NewerFormat, or another error when the row is damaged."""
    config = json.loads(stored)
    if not isinstance(config, dict):
        raise ValueError("not a JSON object")
    found = config.get("schema_version", 1)
    if not isinstance(found, int) or found < 1:
        raise ValueError(f"format {found!r} is not a format number")
    if found > SCHEMA_VERSION:
        raise NewerFormat(found)
    for step in UPGRADES[found - 1 :]:
        config = step.config(config)
    config["schema_version"] = SCHEMA_VERSION
    return config, found


def upgrade_tables(db: sqlite3.Connection, found: int) -> None:
    """Apply the table halves of the steps from format ``found`` on (in the caller's transaction)."""
    for step in UPGRADES[found - 1 :]:
        step.tables(db)
