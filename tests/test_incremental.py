"""Re-indexing: only new or changed files are analysed, deleted ones leave, content is embedded once."""

import os
import shutil

from PIL import Image

from retriever import Engine


def test_reindex_processes_only_what_changed(tmp_path, photo_dir, photo):
    folder = photo_dir("dog", "chelsea", "coffee")
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True) as engine:
        first = engine.add([folder], prune=True)
        assert (first.added, first.unchanged) == (3, 0)

        again = engine.add([folder], prune=True)
        assert (again.added, again.unchanged, again.removed) == (0, 3, 0)

        shutil.copy2(photo("horses"), folder / "new.jpg")  # new file
        (folder / "skimage-coffee.png").unlink()  # deleted file
        image = Image.open(folder / "darknet-dog.jpg").convert("RGB").rotate(90, expand=True)
        image.save(folder / "darknet-dog.jpg")  # changed file (new content)
        third = engine.add([folder], prune=True)
        assert (third.added, third.unchanged, third.removed) == (2, 1, 1)
        assert len(engine) == 3
        assert engine.search("horses", k=1)[0].path == str(folder / "new.jpg")


def test_same_content_under_two_paths_is_embedded_once(tmp_path, photo_dir):
    folder = photo_dir("dog")
    shutil.copy2(folder / "darknet-dog.jpg", folder / "copy-of-dog.jpg")
    with Engine.open(tmp_path / "idx.moair", create=True) as engine:
        report = engine.add([folder])
        assert (report.added, report.linked) == (1, 1)
        assert len(engine) == 1
        hit = engine.search("a dog", k=1)[0]
        assert sorted([hit.path, *hit.other_paths]) == sorted(str(p) for p in folder.iterdir())


def test_moved_file_is_linked_not_reanalysed(tmp_path, photo_dir):
    folder = photo_dir("dog", "chelsea")
    with Engine.open(tmp_path / "idx.moair", create=True) as engine:
        engine.add([folder], prune=True)
        os.rename(folder / "darknet-dog.jpg", folder / "renamed.jpg")
        report = engine.add([folder], prune=True)
        assert (report.added, report.linked, report.removed) == (0, 1, 1)
        assert engine.inspect(str(folder / "renamed.jpg")).paths == [str(folder / "renamed.jpg")]


def test_index_survives_reopen(tmp_path, photo_dir):
    folder = photo_dir("dog", "giraffe")
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True) as engine:
        engine.add([folder])
    with Engine.open(index) as engine:
        assert len(engine) == 2
        assert engine.search("a giraffe", k=1)[0].path.endswith("darknet-giraffe.jpg")


def test_items_from_older_model_versions_are_analysed_again(tmp_path, photo_dir, monkeypatch):
    """After an upgrade changes an expert's version, re-indexing analyses the old items again (in
    place, same item ids) and leaves current ones alone."""
    import sqlite3

    from indexer.experts.ocr import PaddleOcr
    from indexer.records import Perception
    from indexer.store import DB_NAME

    folder = photo_dir("dog", "giraffe")
    shutil.copy2(folder / "darknet-dog.jpg", folder / "copy-of-dog.jpg")
    index = tmp_path / "idx.moair"
    with Engine.open(index, create=True) as engine:
        engine.add([folder])
        dog_id = engine.inspect(str(folder / "darknet-dog.jpg")).item_id
    # The dog's analysis as an older detector version left it: no detections.
    db = sqlite3.connect(index / DB_NAME)
    with db:
        stored = Perception.model_validate_json(
            db.execute("SELECT perception FROM items WHERE id = ?", (dog_id,)).fetchone()[0]
        )
        db.execute(
            "UPDATE items SET perception = ?, expert_versions = ? WHERE id = ?",
            (
                stored.model_copy(update={"detections": []}).model_dump_json(),
                '{"detection": "ssd-mobilenet-v2-coco/0"}',
                dog_id,
            ),
        )
    db.close()

    with Engine.open(index, create=True) as engine:
        assert engine.inspect(dog_id).perception.detections == []
        report = engine.add([folder])
        assert (report.updated, report.added, report.unchanged, report.linked) == (1, 0, 2, 0)
        dog = engine.inspect(str(folder / "darknet-dog.jpg"))
        assert dog.item_id == dog_id and "dog" in {d.label for d in dog.perception.detections}
        assert dog.expert_versions == engine.analyzer.versions()
        assert len(engine) == 2
        assert engine.search("a dog", k=1)[0].item_id == dog_id

        again = engine.add([folder])
        assert (again.updated, again.unchanged) == (0, 3)

        monkeypatch.setattr(PaddleOcr, "version", PaddleOcr.version + "-next")
        upgraded = engine.add([folder])
        assert (upgraded.updated, upgraded.added) == (2, 0)
        assert len(engine) == 2
