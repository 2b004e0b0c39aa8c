"""MoAI's verbalization templates, word for word, and the retrieval phrasing."""

from indexer.experts.relations import number_duplicates
from indexer.records import ColorShare, Detection, Perception, Relation, Tag, TextLine
from indexer.verbalize import moai_box, moai_prompt, retrieval_text, verbalize


def perception(**fields) -> Perception:
    return Perception(width=640, height=480, **fields)


def test_box_is_rounded_to_two_decimals():
    assert moai_box((0.0, 0.104, 0.5, 0.8951)) == "[0.00, 0.10, 0.50, 0.90]"
    assert moai_box((0.125, 0.335, 1.0, 0.999)) == "[0.12, 0.34, 1.00, 1.00]"  # Python's round(), as MoAI


def test_moai_prompt_golden_all_parts():
    p = perception(
        segments=[
            Detection(label="person", score=0.9, box=(0.0, 0.1, 0.5, 0.9)),
            Detection(label="grass-merged", score=0.9, box=(0.0, 0.6, 1.0, 1.0)),
            Detection(label="wall-other-merged", score=0.8, box=(0.0, 0.0, 1.0, 0.5)),
        ],
        detections=[
            Detection(label="dog", score=0.88, box=(0.18, 0.37, 0.41, 0.93)),
            Detection(label="bicycle", score=0.98, box=(0.1, 0.23, 0.72, 0.72)),
        ],
        relations=[
            Relation(subject="person", predicate="riding", object="horse"),
            Relation(subject="dog", predicate="on", object="beach"),
        ],
        text=[
            TextLine(text="OPEN", score=0.99, box=(0, 0, 1, 1)),
            TextLine(text="24 HOURS", score=0.9, box=(0, 0, 1, 1)),
        ],
    )
    assert moai_prompt(p) == (
        "The image includes bounding box coordinates and their objects: "
        "[0.00, 0.10, 0.50, 0.90] person, and [0.00, 0.60, 1.00, 1.00] grass, and [0.00, 0.00, 1.00, 0.50] wall. "
        "The image includes bounding box coordinates and their objects: "
        "[0.18, 0.37, 0.41, 0.93] dog, and [0.10, 0.23, 0.72, 0.72] bicycle. "
        "The image includes relationships between objects: person is riding horse, and dog is on beach. "
        "The image includes text descriptions: OPEN, and 24 HOURS."
    )


def test_moai_prompt_empty_parts_are_empty_strings_joined_by_spaces():
    """MoAI joins the four parts with one space even when a part is empty."""
    p = perception(text=[TextLine(text="EXIT", score=0.95, box=(0, 0, 1, 1))])
    assert moai_prompt(p) == "   The image includes text descriptions: EXIT."
    assert moai_prompt(perception()) == "   "


def test_repeated_labels_are_numbered_like_moai():
    assert number_duplicates(["person", "horse", "person", "dog", "person"]) == [
        "person (#1)",
        "horse",
        "person (#2)",
        "dog",
        "person (#3)",
    ]


def test_retrieval_text_says_counts_relations_text_and_colours():
    p = perception(
        detections=[
            Detection(label="dog", score=0.9, box=(0.0, 0.5, 0.3, 1.0)),
            Detection(label="dog", score=0.8, box=(0.6, 0.5, 0.9, 1.0)),
            Detection(label="bicycle", score=0.7, box=(0.3, 0.4, 0.6, 1.0)),
            Detection(label="person", score=0.7, box=(0.3, 0.0, 0.6, 0.4)),
        ],
        relations=[
            Relation(subject="dog (#1)", predicate="left of", object="bicycle"),
            Relation(subject="dog (#1)", predicate="left of", object="dog (#2)"),
        ],
        text=[TextLine(text="OPEN", score=0.99, box=(0, 0, 1, 1))],
        colors=[ColorShare(name="green", fraction=0.5), ColorShare(name="white", fraction=0.2)],
        tags=[Tag(label="malamute", score=0.4, kind="dog")],
    )
    assert retrieval_text(p) == (
        "a photo of two dogs, a bicycle and a person; a dog is left of the bicycle; a dog is left of another dog; "
        "the text reads 'OPEN'; mostly green and white; it may show a malamute (dog)"
    )
    drawn = perception(
        colors=[ColorShare(name="blue", fraction=0.6)], tags=[Tag(label="alp", score=0.5, kind="mountain, landscape")]
    )
    drawn.medium = "digital illustration"
    assert retrieval_text(drawn) == "a digital illustration; mostly blue; it may show an alp (mountain, landscape)"
    assert verbalize(p).text == "OPEN"


def test_counts_use_irregular_plurals_and_digits_past_ten():
    people = [Detection(label="person", score=0.9, box=(0.0, 0.0, 0.1, 0.1))] * 12
    assert retrieval_text(perception(detections=people)).startswith("a photo of 12 people")


def test_korean_clause_uses_counters_particles_and_korean_names():
    from indexer.lexicon.korean import counted, subject_particle
    from indexer.verbalize import korean_caption

    assert [counted("dog", 1), counted("person", 5), counted("car", 12), counted("cup", 2), counted("tie", 1)] == [
        "개 한 마리",
        "사람 다섯 명",
        "자동차 12대",
        "컵 둘",
        "넥타이 하나",  # not 개, which means dog
    ]
    assert (subject_particle("사람"), subject_particle("개")) == ("사람이", "개가")
    p = perception(
        detections=[
            Detection(label="horse", score=0.9, box=(0.0, 0.5, 0.3, 1.0)),
            Detection(label="horse", score=0.8, box=(0.6, 0.5, 0.9, 1.0)),
            Detection(label="person", score=0.7, box=(0.3, 0.0, 0.6, 0.4)),
        ],
        relations=[
            Relation(subject="person", predicate="on", object="horse (#1)"),
            Relation(subject="horse (#1)", predicate="left of", object="horse (#2)"),
        ],
        colors=[ColorShare(name="green", fraction=0.5)],
        tags=[Tag(label="espresso", score=0.4), Tag(label="bald eagle", score=0.3)],
    )
    caption = korean_caption(p)
    assert caption.startswith(
        "사진 속 말 두 마리, 사람 한 명; 사람이 말 위에 있음; 말이 다른 말 왼쪽에 있음; 색 초록색; 보이는 것 "
    )
    assert "에스프레소" in caption and "커피" in caption and "흰머리수리" in caption
    assert verbalize(p).retrieval_ko == caption
    assert korean_caption(perception()) == ""
