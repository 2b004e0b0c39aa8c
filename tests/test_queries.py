"""What a query asks beyond its words: task instructions (UniIR's and plain requests) are taken out
of the text that is matched; a composed query never answers with its own reference image; a
picture of a sentence is matched by what it says. On the real sample-photo index."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from retriever.queries import ParsedQuery, parse_query

UNIIR_STYLE = [  # (query as UniIR builds it, what is left to match, the kind of item asked for)
    ("Find me an everyday image that matches the given caption. A dog on a beach.", "A dog on a beach.", "image"),
    ("Identify the image showcasing the described everyday scene. Two giraffes.", "Two giraffes.", "image"),
    (
        "Retrieve passages from Wikipedia that provide answers to the following question. Who built it?",
        "Who built it?",
        "text",
    ),
    (
        "Based on the following fashion description, retrieve the best matching image. A red dress.",
        "A red dress.",
        "image",
    ),
    (
        "You have to find a Wikipedia segment that answers the question about the displayed image. What is it?",
        "What is it?",
        "text",
    ),
    ("Find me an everyday image that matches the given caption. 고양이.", "고양이.", "image"),
]


@pytest.mark.parametrize("query, content, wants", UNIIR_STYLE)
def test_an_instruction_is_taken_out_and_read_for_what_it_asks(query, content, wants):
    parsed = parse_query(query)
    assert (parsed.text, parsed.wants) == (content, wants) and query.startswith(parsed.instruction)


def test_plain_queries_stay_whole_and_plain_requests_are_cut_to_their_content():
    for plain in (
        "a dog",
        "고양이",
        "A sign that says OPEN. Red letters.",
        "The photo shows a dog. It is brown.",
        "a page that says 'segmentation'",
    ):
        assert parse_query(plain) == ParsedQuery(plain)
    assert parse_query("find a photo of a dog on the beach").text == "a dog on the beach"
    assert parse_query("Show me pictures of two horses").text == "two horses"
    # an image query whose text is only an instruction has nothing else to match
    only = "Find a day-to-day image that looks similar to the provided image."
    assert parse_query(only, has_image=True) == ParsedQuery(None, only, "image")
    assert parse_query("Find an image caption describing the following everyday image.", has_image=True).wants == "text"
    assert parse_query(only).text == only  # without an image it is all there is to match


def test_an_instruction_changes_nothing_in_the_ranking(engine):
    plain = engine.search("Two giraffes and a zebra.", k=5)  # as UniIR formats a query without instruction
    instructed = engine.search(
        "Find me an everyday image that matches the given caption. two giraffes and a zebra.", k=5
    )
    assert [(h.item_id, h.score) for h in instructed] == [(h.item_id, h.score) for h in plain]
    assert plain[0].path.endswith("darknet-giraffe.jpg")


def test_a_composed_query_leaves_out_its_reference_image(engine, photo):
    hits = engine.search("with a person and a horse", image=photo("dog"), k=5)
    assert str(photo("dog")) not in [h.path for h in hits] and [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0].path.endswith("darknet-person.jpg")
    assert engine.search(image=photo("dog"), k=1)[0].path == str(photo("dog"))  # an image alone still finds itself


@pytest.mark.parametrize("size", [(720, 160), (1024, 1024)])  # a strip of writing, and small writing on a big card
def test_a_picture_of_a_sentence_is_matched_by_what_it_says(engine, tmp_path, size):
    sentence = tmp_path / "sentence.png"
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text(
        (20, size[1] // 2), "two giraffes and a zebra in the grass", fill="black", font=ImageFont.load_default(size=36)
    )
    image.save(sentence)
    hits = engine.search(image=sentence, k=3)
    assert hits[0].path.endswith("darknet-giraffe.jpg"), [h.path for h in hits]
    assert hits[0].contributions["visual"] == 0.0  # a white card looks like nothing: only its words are matched
