"""The ``moair`` command as a user runs it: index, search (text, Korean, image), inspect, --json."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

MOAIR = str(Path(sys.executable).parent / "moair")


def run(*args, check=True):
    result = subprocess.run([MOAIR, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_index_search_inspect_round_trip(tmp_path, photo_dir, photo):
    folder = photo_dir("dog", "chelsea", "giraffe", "page")
    index = tmp_path / "cli.moair"
    report = json.loads(run("index", folder, "--index", index, "--json").stdout)
    assert report["added"] == 4 and report["skipped"] == [] and report["items_in_index"] == 4

    hits = json.loads(run("search", "a dog", "--index", index, "-k", "2", "--json").stdout)
    assert len(hits) == 2 and hits[0]["path"].endswith("darknet-dog.jpg")
    assert set(hits[0]["contributions"]) == {"caption", "text", "visual"}

    korean = json.loads(run("search", "고양이", "--index", index, "--json").stdout)
    assert korean[0]["path"].endswith("skimage-chelsea.png")

    by_image = json.loads(run("search", "--image", photo("giraffe"), "--index", index, "--json").stdout)
    assert by_image[0]["path"].endswith("darknet-giraffe.jpg")

    table = run("search", "a giraffe", "--index", index).stdout
    assert "giraffe" in table

    detail = json.loads(run("inspect", folder / "skimage-page.png", "--index", index, "--json").stdout)
    assert "The image includes text descriptions:" in detail["verbalization"]["moai"]
    human = run("inspect", folder / "darknet-dog.jpg", "--index", index).stdout
    assert "MoAI verbalization" in human and "dog" in human

    floor = hits[1]["score"]
    kept = json.loads(run("search", "a dog", "--index", index, "--min-score", floor, "--json").stdout)
    assert [h["score"] for h in kept] == [h["score"] for h in hits if h["score"] >= floor]
    only_text = json.loads(run("search", "a dog", "--index", index, "--modality", "text", "--json").stdout)
    assert only_text == []  # the index holds photos only

    stats = json.loads(run("stats", "--index", index, "--json").stdout)
    assert (stats["items"], stats["items_by_modality"], stats["index_type"]) == (4, {"image": 4}, "Flat")
    assert "exact search" in run("stats", "--index", index).stdout


def test_help_explains_each_command():
    for command in ("index", "search", "stats", "optimize", "inspect", "demo", "doctor"):
        text = run(command, "--help").stdout
        assert "--index" in text or command == "demo"
        assert "--json" in text


def test_missing_query_is_a_clear_error(tmp_path, photo_dir):
    index = tmp_path / "cli.moair"
    run("index", photo_dir("dog"), "--index", index, "-q")
    result = run("search", "--index", index, check=False)
    assert result.returncode == 2 and "give a text query" in result.stderr and "Traceback" not in result.stderr


def test_demo_checks_what_it_finds_and_fails_when_a_search_misses(tmp_path, samples):
    cache = tmp_path / "cache"
    shutil.copytree(samples, cache / "samples")
    shutil.copyfile(samples / "sklearn-china.jpg", cache / "samples" / "darknet-dog.jpg")  # no dog photo any more
    result = run("demo", "--cache", cache, "--json", check=False)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["report"]["items_in_index"] == 19  # the copy of china.jpg is linked to it
    assert report["problems"] == ["the text search 'a dog' found darknet-person.jpg first, not darknet-dog.jpg"]
    assert [s["found"] == s["expected"] for s in report["searches"]] == [False, True, True, True, True, True]

    human = run("demo", "--cache", cache, check=False)
    assert human.returncode == 1 and "demo check failed: the text search 'a dog'" in human.stderr
