"""Rerank and answers through the MoAI path: an index whose backbone is a tiny random MoAI (the
published layout, tests/tiny_moai.py) uses that same loaded model as its generator. Random weights
say nothing about quality: these tests check the plumbing (P("Yes") over "Yes"/"No" tokens, the
order, the time budget, streamed answers with citations) through the real code path."""

from __future__ import annotations

import json

import pytest
from devices import DEVICE
from loopback import local_client
from rerank_checks import reranked_checked

from api.server import create_app
from indexer.errors import MoairError
from retriever import Engine
from retriever.generative.ask import NOT_FOUND, Answer, Sources, Token
from retriever.generative.moai import MoAIGenerator

PHOTOS = ("dog", "kite", "coffee")


@pytest.fixture(scope="module")
def moai_index(tiny_moai, tmp_path_factory, samples):
    index = tmp_path_factory.mktemp("moai") / "moai.moair"
    photos = [p for p in samples.iterdir() if p.stem.split("-", 1)[1] in PHOTOS]
    with Engine.open(
        index, create=True, backbone="moai", checkpoint=tiny_moai, device=DEVICE, dtype="float32"
    ) as engine:
        assert engine.add(photos).added == len(PHOTOS)
    return index


@pytest.fixture(scope="module")
def engine(moai_index):
    with Engine.open(moai_index, device=DEVICE, dtype="float32") as opened:
        yield opened


def test_the_moai_backbone_is_its_own_generator(engine):
    generator = engine.generator()
    assert isinstance(generator, MoAIGenerator) and generator.backbone is engine.analyzer.backbone
    assert generator.version == engine.analyzer.backbone.version


def test_rerank_orders_the_top_hits_by_p_yes(engine):
    plain = engine.search("a dog on the grass", k=3)
    reranked = reranked_checked(engine, "a dog on the grass", 3)
    assert engine.search("a dog on the grass", k=3, rerank=3) == reranked  # deterministic
    partly = engine.search("a dog on the grass", k=3, rerank=2)  # only the top 2 are judged
    assert partly[2] == plain[2].model_copy(update={"rank": 3}) and partly[2].rerank_score is None


def test_a_spent_time_budget_judges_nothing_and_keeps_the_order(engine):
    plain = engine.search("a kite", k=3)
    hurried = engine.search("a kite", k=3, rerank=3, time_budget=1e-9)
    assert hurried == plain


def test_bad_rerank_requests_are_clear_errors(engine, photo):
    with pytest.raises(MoairError, match="rerank needs a text query"):
        engine.search(image=photo("dog"), rerank=2)
    with pytest.raises(MoairError, match="rerank must be a whole number"):
        engine.search("a dog", rerank=-1)
    with pytest.raises(MoairError, match="time_budget must be"):
        engine.search("a dog", rerank=2, time_budget=0)


def test_an_answer_streams_then_cites_its_sources(engine):
    events = list(engine.ask_stream("What is in the photo?", k=3, min_score=-10.0))
    assert isinstance(events[0], Sources) and isinstance(events[-1], Answer)
    pieces = [e.text for e in events if isinstance(e, Token)]
    answer = events[-1]
    assert answer.found and answer.answer == "".join(pieces).strip()
    assert answer.citations and {c.item_id for c in answer.citations} <= {h.item_id for h in events[0].sources}
    assert answer.generator == engine.generator().version and answer.seconds > 0
    again = engine.ask("What is in the photo?", k=3, min_score=-10.0)  # greedy: the same answer
    assert (again.answer, again.citations) == (answer.answer, answer.citations)


def test_no_source_above_the_floor_means_not_found_without_generating(engine):
    answer = engine.ask("What is in the photo?", k=3, min_score=10.0)
    assert not answer.found and answer.answer == NOT_FOUND and answer.citations == [] and answer.sources == []
    assert answer.generator == "none"  # nothing was generated


def test_http_ask_streams_server_sent_events(moai_index):
    with local_client(create_app(moai_index, device=DEVICE, dtype="float32")) as client:
        with client.stream(
            "POST", "/ask", json={"question": "What is in the photo?", "k": 2, "min_score": -10}
        ) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            body = "".join(response.iter_text())
        blocks = [b for b in body.split("\n\n") if b]
        names = [b.split("\n")[0].removeprefix("event: ") for b in blocks]
        assert names[0] == "sources" and names[-1] == "answer" and set(names[1:-1]) <= {"token"}
        final = json.loads(blocks[-1].split("\n", 1)[1].removeprefix("data: "))
        assert final["found"] and final["citations"]
        whole = client.post(
            "/ask", json={"question": "What is in the photo?", "k": 2, "min_score": -10, "stream": False}
        )
        assert whole.status_code == 200 and whole.json()["answer"] == final["answer"]
        reranked = client.post("/search", json={"text": "a dog", "k": 2, "rerank": 2})
        assert reranked.status_code == 200 and reranked.json()["reranked_by"].startswith("moai-")
        assert all(h["rerank_score"] is not None for h in reranked.json()["hits"])
