"""Plug-ins from another package, named ``package.module:Class``: an expert that is not registered
is built, recorded under that name, runs after the experts whose output it reads, and is built
again when the index is opened; wrong names get a message."""

from __future__ import annotations

import json
import textwrap

import pytest
from typer.testing import CliRunner

from api.cli import app
from indexer.encoders import TEXT_EMBEDDERS
from indexer.errors import MoairError
from indexer.experts import DEFAULT_EXPERTS, EXPERTS, run_order
from retriever import Engine

ORIENTATION = "moair_extra.orientation:Orientation"


@pytest.fixture
def extra_package(tmp_path, monkeypatch):
    """A package outside moair holding one expert, importable as a user's installed one would be."""
    package = tmp_path / "site" / "moair_extra"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "orientation.py").write_text(
        textwrap.dedent(
            '''
            from indexer.records import Tag


            class Orientation:
                """Tags a photo by the shape of its frame; it adds to the ImageNet tags, so it reads them."""

                name = "orientation"
                version = "aspect/1"
                reads = ("tags",)
                writes = ("tags",)

                def run(self, analysis):
                    width, height = analysis.image.width, analysis.image.height
                    label = "portrait orientation" if height > width else "landscape orientation"
                    analysis.perception.tags.append(Tag(label=label, score=1.0))
            '''
        )
    )
    monkeypatch.syspath_prepend(str(package.parent))
    return package


def test_an_expert_from_another_package_is_recorded_by_its_path_and_built_again(extra_package, photo_dir, tmp_path):
    assert run_order([ORIENTATION, *DEFAULT_EXPERTS]) == [*DEFAULT_EXPERTS, ORIENTATION]
    index = tmp_path / "extra.moair"
    with Engine.open(index, create=True, experts=[*DEFAULT_EXPERTS, ORIENTATION]) as engine:
        report = engine.add([photo_dir("dog")])
        assert report.added == 1 and report.skipped == []
        assert [e.name for e in engine.store.config.experts][-1] == ORIENTATION
        tags = [t.label for t in engine.inspect(1).perception.tags]
        assert tags[-1] == "landscape orientation" and len(tags) > 1  # after the ImageNet tags, not instead
    with Engine.open(index) as engine:
        assert engine.analyzer.experts[-1].name == "orientation"
        assert engine.search("a dog", k=1)[0].path.endswith("darknet-dog.jpg")
    with pytest.raises(MoairError, match="was built with the experts"):
        Engine.open(index, experts=list(DEFAULT_EXPERTS))  # leaving it out of an existing index is refused


def test_the_command_line_adds_an_expert_by_its_path(extra_package, photo_dir, tmp_path):
    index = tmp_path / "cli.moair"
    runner = CliRunner()
    result = runner.invoke(
        app, ["index", str(photo_dir("dog")), "--index", str(index), "--expert", ORIENTATION, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 1
    stats = json.loads(runner.invoke(app, ["stats", "--index", str(index), "--json"]).stdout)
    assert stats["experts"][ORIENTATION] == "aspect/1"  # recorded by the name it is built from


@pytest.mark.parametrize(
    "path, message",
    [
        ("moair_no_such_package.module:Class", "cannot be imported (ModuleNotFoundError"),
        ("indexer.experts.colors:NoSuchClass", "indexer.experts.colors has no NoSuchClass"),
        ("indexer.experts.colors:COLOR_NAMES", "is a list, not a class"),
        (":Class", "neither a known text embedder nor package.module:Class"),
    ],
)
def test_a_wrong_path_gets_a_message(path, message):
    with pytest.raises(MoairError, match=message.replace("(", r"\(")):
        TEXT_EMBEDDERS.create(path)


def test_a_module_that_fails_to_import_is_named(tmp_path, monkeypatch):
    (tmp_path / "moair_broken.py").write_text("raise RuntimeError('needs a licence key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MoairError, match=r"the expert 'moair_broken:X' cannot be imported \(RuntimeError: needs a"):
        EXPERTS.get("moair_broken:X")
