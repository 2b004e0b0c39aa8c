"""Search over the real sample photos: text (English, Korean), image, image + text, and the mixture."""

import numpy as np
import pytest
from PIL import Image

from indexer.mixture import IMAGE_QUERY_WEIGHTS, TEXT_QUERY_WEIGHTS, Block, Layout
from retriever.gate import gate


def top_names(hits, n=3):
    return [h.path.rsplit("/", 1)[-1] for h in hits[:n]]


def test_a_dog_finds_the_dog_photo_in_the_top_3(engine):
    assert "darknet-dog.jpg" in top_names(engine.search("a dog", k=10))


def test_korean_query_finds_the_cat(engine):
    assert top_names(engine.search("고양이", k=10), 3)[0] == "skimage-chelsea.png"  # 고양이 = cat


@pytest.mark.parametrize(
    "query, photo_stem, evidence",
    [
        ("기린과 얼룩말", "darknet-giraffe", {"two giraffes", "a zebra"}),  # giraffe and zebra
        ("독수리", "darknet-eagle", {"looks like bald eagle"}),  # eagle: the Korean name of an ImageNet tag
        ("말과 함께 있는 사람", "darknet-person", {"a horse", "a person"}),  # a person with a horse
        (
            "개",
            "darknet-dog|darknet-person",
            {"a dog"},
        ),  # dog (also a counter word, which the caption avoids); both photos show one
    ],
)
def test_korean_queries_meet_the_korean_caption(engine, query, photo_stem, evidence):
    hits = engine.search(query, k=3)
    assert top_names(hits, 1)[0].rsplit(".", 1)[0] in photo_stem.split("|")
    assert evidence <= set(hits[0].evidence)


def test_counts_and_objects_rank_the_giraffe_photo_first(engine):
    assert top_names(engine.search("two giraffes and a zebra"), 1) == ["darknet-giraffe.jpg"]


def test_quoted_text_leans_on_ocr(engine):
    hits = engine.search("a page that says 'segmentation'", k=5)
    assert top_names(hits, 1) == ["skimage-page.png"]
    assert hits[0].contributions["text"] > 0
    assert any("segmentation" in e.lower() for e in hits[0].evidence)


def test_image_query_finds_the_source_of_a_crop(engine, photo, tmp_path):
    for name, box in (("dog", (100, 100, 500, 500)), ("horses", (200, 50, 700, 450)), ("chelsea", (50, 20, 400, 280))):
        crop = tmp_path / f"crop-{name}.jpg"
        Image.open(photo(name)).convert("RGB").crop(box).save(crop, quality=85)
        hits = engine.search(image=crop, k=5)
        assert hits[0].path == str(photo(name)), (name, top_names(hits, 5))
        assert hits[0].contributions["visual"] > hits[1].contributions["visual"]


def test_image_plus_text_query(engine, photo):
    hits = engine.search("a horse", image=photo("dog"), k=5)
    assert top_names(hits, 3)[:1] != []
    assert hits[0].contributions["visual"] != 0 and hits[0].contributions["caption"] != 0


def test_hits_carry_scores_contributions_and_evidence(engine):
    hits = engine.search("a dog", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(hits[i].score >= hits[i + 1].score for i in range(4))
    for h in hits:
        assert h.score == pytest.approx(sum(h.contributions.values()), abs=1e-3)
        assert h.evidence
    dog = next(h for h in hits if h.path.endswith("darknet-dog.jpg"))
    assert "a dog" in dog.evidence


def test_k_larger_than_the_collection_returns_every_item_once(engine):
    hits = engine.search("anything", k=500)
    assert len(hits) == len(engine) and len({h.item_id for h in hits}) == len(hits)


def test_inspect_shows_perception_and_both_verbalizations(engine, photo):
    record = engine.inspect(str(photo("dog")))
    assert "dog" in [d.label for d in record.perception.detections]
    assert "The image includes bounding box coordinates and their objects:" in record.verbalization.moai
    assert record.verbalization.retrieval.startswith("a photo of")
    assert engine.inspect(record.item_id).content_hash == record.content_hash


def test_mixture_score_is_weighted_sum_of_cosines_minus_chance():
    layout = Layout(
        blocks=[
            Block(name="caption", dim=2, unrelated_similarity=0.5),
            Block(name="text", dim=2, unrelated_similarity=0.5),
            Block(name="visual", dim=2, unrelated_similarity=0.2),
        ]
    )
    item = layout.compose({"caption": np.array([1.0, 0.0]), "text": None, "visual": np.array([0.6, 0.8])})
    query = layout.compose(
        {"caption": np.array([0.6, 0.8]), "text": np.array([1.0, 0.0]), "visual": np.array([0.0, 1.0])},
        {"caption": 2.0, "text": 1.0, "visual": 0.5},
    )
    # caption: 2 * (0.6 - 0.5); text: absent in the item -> 0; visual: 0.5 * (0.8 - 0.2)
    assert float(item @ query) == pytest.approx(2 * 0.1 + 0 + 0.5 * 0.6)
    assert layout.contributions(query, item[None])[0] == pytest.approx({"caption": 0.2, "text": 0.0, "visual": 0.3})


def test_gate_weights_follow_the_query():
    plain = gate("a dog on a beach", has_image=False)
    sign = gate('the sign that says "OPEN"', has_image=False)
    korean_sign = gate("간판", has_image=False)
    image = gate(None, has_image=True)
    assert plain.weights["visual"] == 0 and plain.weights["caption"] > plain.weights["text"]
    assert sign.weights["text"] > plain.weights["text"] and sign.text_for_ocr == "OPEN"
    assert korean_sign.weights["text"] > plain.weights["text"]
    assert image.weights["visual"] > image.weights["caption"] and image.weights["text"] == 0


def test_rows_made_from_items_are_weighed_as_the_gate_weighs_those_queries():
    """Tuning queries and "more like this" are made from stored rows, on the indexing side, with
    the weights the gate gives a plain text query and an image query (with writing in it)."""
    assert gate("a dog on a beach", has_image=False).weights == TEXT_QUERY_WEIGHTS
    assert gate(None, has_image=True, image_has_text=True).weights == IMAGE_QUERY_WEIGHTS


def test_minilm_text_embedder_builds_a_working_index(tmp_path, photo_dir):
    """The English-only MiniLM embedder (sentence-transformers, real weights) through the same path."""
    from retriever import Engine, MoairError

    with Engine.open(tmp_path / "minilm.moair", create=True, text_embedder="minilm") as engine:
        engine.add([photo_dir("dog", "chelsea", "giraffe", "horses")])
        assert engine.store.config.text_embedder.name == "minilm"
        assert engine.search("a dog", k=3)[0].path.endswith("darknet-dog.jpg")
        assert engine.search("a giraffe", k=3)[0].path.endswith("darknet-giraffe.jpg")
    # asking for the default embedder by name is asking for another one: said, not ignored
    with pytest.raises(MoairError, match="built with the minilm text embedder"):
        Engine.open(tmp_path / "minilm.moair", text_embedder="e5-small")
    with Engine.open(tmp_path / "minilm.moair") as engine:  # not asked: whatever it was built with
        assert engine.store.config.text_embedder.name == "minilm"


def test_cut_by_score_keeps_hits_above_the_floor_and_before_the_first_big_drop():
    from retriever.search import cut_by_score

    ranked = [(0.9, 1), (0.85, 2), (0.5, 3), (0.45, 4), (0.1, 5)]
    assert cut_by_score(ranked, None, None) == ranked
    assert [i for _, i in cut_by_score(ranked, 0.45, None)] == [1, 2, 3, 4]
    assert [i for _, i in cut_by_score(ranked, None, 0.2)] == [1, 2]  # 0.85 -> 0.5 falls by 0.35
    assert [i for _, i in cut_by_score(ranked, 0.6, 0.5)] == [1, 2]
    assert cut_by_score(ranked, 0.95, None) == []


def test_min_score_and_max_drop_on_real_searches(engine):
    hits = engine.search("a dog", k=20)
    floor = hits[2].score
    assert [h.item_id for h in engine.search("a dog", k=20, min_score=floor)] == [
        h.item_id for h in hits if h.score >= floor
    ]
    assert all(h.score >= floor for h in engine.search("a dog", k=20, min_score=floor))
    cut = engine.search("a dog", k=20, max_drop=0.0)
    assert len(cut) < len(hits) and cut[0].item_id == hits[0].item_id
    with pytest.raises(Exception, match="max_drop must be 0 or more"):
        engine.search("a dog", max_drop=-0.1)
    with pytest.raises(Exception, match="min_score must be a number"):
        engine.search("a dog", min_score="high")


def test_stats_describe_the_index(engine):
    info = engine.stats()
    assert (info.items, info.paths, info.items_by_modality, info.skipped) == (20, 20, {"image": 20}, 0)
    assert (info.index_type, info.requested_index_type, info.exact, info.recall_estimate) == ("Flat", "auto", True, 1.0)
    assert (info.shards, info.tombstones, info.search_knob) == (1, 0, "")
    assert info.flat_bytes == 20 * info.dim * 4 and info.index_bytes > info.flat_bytes  # ids and header on top
    assert info.faiss_file_bytes == info.index_bytes  # saved: the one shard file is the index
    assert list(info.experts) == ["detection", "tags", "ocr", "hangul", "colors", "medium", "relations"]
