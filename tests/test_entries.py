"""Entries: items that are texts, images or both, given by key (M-BEIR's candidates), and search
restricted to one modality."""

import shutil
import sqlite3

import pytest

from indexer.records import Entry
from indexer.store import DB_NAME
from retriever import Engine, MoairError

TEXTS = {
    "t:bus": "A red double-decker bus drives through a London street.",
    "t:soup": "A recipe for tomato soup with basil and cream.",
    "t:dog": "A dog sits next to a bicycle in front of a car.",
}


@pytest.fixture
def mixed_index(tmp_path, photo):
    """Two photo files, three text entries, one image + text entry and one image entry."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "giraffe"):
        shutil.copy2(photo(name), photos)
    index = tmp_path / "mixed.moair"
    with Engine.open(index, create=True) as engine:
        engine.add([photos])
        report = engine.add_entries(
            [Entry(key=key, text=text) for key, text in TEXTS.items()]
            + [
                Entry(key="it:horses", text="Horses grazing on a farm.", image=photo("horses")),
                Entry(key="i:eagle", image=photo("eagle")),
            ]
        )
        assert (report.added, report.skipped) == (5, [])
    return index


def keys(hits):
    return [h.path.rsplit("/", 1)[-1] for h in hits]


def test_text_entries_are_found_by_text_and_hold_only_the_caption_block(mixed_index):
    with Engine.open(mixed_index) as engine:
        hits = engine.search("a bus in the city", k=3, modality="text")
        assert keys(hits)[0] == "t:bus"
        assert {h.modality for h in (engine.inspect(h.item_id) for h in hits)} == {"text"}
        assert hits[0].contributions["visual"] == 0.0 and hits[0].contributions["text"] == 0.0
        assert engine.inspect(hits[0].item_id).verbalization.given_text == TEXTS["t:bus"]


def test_modality_filter_keeps_other_kinds_out(mixed_index, photo):
    with Engine.open(mixed_index) as engine:
        assert len(engine) == 7
        everything = engine.search("a dog next to a bicycle", k=7)
        assert len(everything) == 7
        only_images = engine.search("a dog next to a bicycle", k=7, modality="image")
        assert sorted(keys(only_images)) == ["darknet-giraffe.jpg", "i:eagle", "skimage-chelsea.png"]
        assert keys(engine.search("a dog next to a bicycle", k=7, modality="text"))[0] == "t:dog"
        pairs = engine.search(image=photo("horses"), k=7, modality="image,text")
        assert keys(pairs) == ["it:horses"]
        with pytest.raises(MoairError, match="modality must be one of image, text, image,text"):
            engine.search("a dog", modality="video")


def test_known_keys_are_not_analysed_again_and_equal_texts_are_embedded_once(mixed_index):
    with Engine.open(mixed_index, create=True) as engine:
        again = engine.add_entries([Entry(key=key, text=text) for key, text in TEXTS.items()])
        assert (again.added, again.unchanged) == (0, 3)
        twin = engine.add_entries([Entry(key="t:bus-copy", text=TEXTS["t:bus"])])
        assert (twin.added, twin.linked) == (0, 1)
        hit = engine.search("double-decker bus", k=1, modality="text")[0]
        assert sorted([hit.path, *hit.other_paths]) == ["t:bus", "t:bus-copy"]


def test_a_bad_entry_image_is_skipped_with_its_reason_and_remembered(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with Engine.open(tmp_path / "idx.moair", create=True) as engine:
        report = engine.add_entries([Entry(key="bad", image=broken), Entry(key="ok", text="a caption")])
        assert report.added == 1 and [key for key, _ in report.skipped] == ["bad"]
        assert engine.add_entries([Entry(key="bad", image=broken)]).skipped_before == 1


def test_an_index_from_before_modalities_is_read_as_images_and_upgraded_by_a_writer(tmp_path, photo_dir):
    index = tmp_path / "old.moair"
    with Engine.open(index, create=True) as engine:
        engine.add([photo_dir("dog")])
    db = sqlite3.connect(index / DB_NAME)
    db.execute("ALTER TABLE items DROP COLUMN modality")  # as indexes were before this change
    db.commit()
    db.close()
    with Engine.open(index) as reader:
        assert keys(reader.search("a dog", k=1, modality="image")) == ["darknet-dog.jpg"]
        assert reader.search("a dog", k=1, modality="text") == []
        assert reader.inspect(1).modality == "image"
    with Engine.open(index, create=True) as writer:
        writer.add_entries([Entry(key="t:1", text="a dog")])
        assert keys(writer.search("a dog", k=1, modality="text")) == ["t:1"]
