"""A whole hostile collection (issue 15): over 200 hostile files of every kind mixed into the real
sample photos (made at test time by benchmarks/hostile.py), indexed by the real ``moair index``
in a subprocess with a time limit and its peak memory measured. Every good photo is indexed and
found; every hostile file has a one-line reason; a second run reads nothing again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from retriever import Engine

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from hostile import make_hostile_collection  # noqa: E402
from moair_process import measured_moair  # noqa: E402


def measured_index(folder: Path, index: Path) -> tuple[dict, float]:
    run, peak_mib = measured_moair("index", folder, "--index", index, "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout), peak_mib


def test_a_hostile_collection_is_indexed_with_a_reason_for_every_bad_file(tmp_path, samples):
    photos = sorted(samples.iterdir())
    cases = make_hostile_collection(tmp_path / "photos", photos)
    hostile = [c for c in cases if c.kind != "real photo"]
    assert len(hostile) >= 200
    report, peak_mib = measured_index(tmp_path / "photos", tmp_path / "x.moair")

    reasons = {s["path"]: s["reason"] for s in report["skipped"] + report["failed"]}
    shown = {
        case.path: str(case.path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        for case in cases
    }
    for case in cases:
        reason = reasons.get(shown[case.path])
        if case.indexed:
            assert reason is None, (case.kind, case.path, reason)
        else:
            assert reason and "\n" not in reason and case.says in reason, (case.kind, case.path, reason)
    assert len(reasons) == sum(not c.indexed for c in cases)
    assert peak_mib < 3 * 1024, f"peak memory {peak_mib:.0f} MiB"

    with Engine.open(tmp_path / "x.moair") as engine:
        assert report["items_in_index"] == len(engine)
        for case in (c for c in cases if c.indexed):
            item = engine.inspect(str(case.path))  # indexed under its exact name
            if case.content_of is None:  # its own content: an image search of it finds it first
                assert engine.search(image=case.path, k=1)[0].item_id == item.item_id, (case.kind, case.path)
            else:
                assert item.item_id == engine.inspect(str(case.path.parent / case.content_of.name)).item_id

    again, _ = measured_index(tmp_path / "photos", tmp_path / "x.moair")  # bad bytes are remembered, not read again
    assert (again["added"], again["skipped"], again["unchanged"]) == (0, [], sum(c.indexed for c in cases))
    assert {f["path"] for f in again["failed"]} == {
        shown[c.path] for c in cases if c.kind in ("dangling link", "link loop")
    }  # may work later
