"""Training a projection head (``indexer.head``) with E5-V's text-only recipe (``moair train-head``).

E5-V makes a multimodal LLM an embedder and then fine-tunes it on *text only*: SimCSE's NLI
triples (an anchor sentence, an entailed one as positive, a contradicting one as hard negative),
InfoNCE over cosine similarity divided by a temperature of 0.05, with the other sentences in the
batch as negatives. Because images and texts already meet in one space through the prompt, what
is learnt on text carries over to images. moair keeps the recipe but trains something small
enough for a CPU and usable with any backbone: one linear map per embedding space, on top of the
frozen encoder.

Recipe (``train_head``):

1. Embed every text of the training triples once with the frozen encoder: the anchor with its
   query function, positives and negatives with its passage function (for E5-V, one function).
2. The head maps an L2-normalised embedding ``x`` to ``normalise(W x)``, with ``W`` a d x d
   matrix. For a batch of anchors ``a_i``, the candidates are all positives ``p_j`` and all hard
   negatives ``n_j`` of the batch; the loss is the cross-entropy of ``cos(h(a_i), h(c)) / 0.05``
   over those candidates with ``p_i`` the right one (InfoNCE, in-batch + hard negatives). A
   candidate that is really a positive of the same anchor (the same query in two triples, the
   same positive text) is masked out rather than counted as a negative.
3. AdamW on ``W`` alone, seeded, on the CPU, with an optional small L2 pull of ``W`` towards
   the identity. A seeded held-out split (whole queries, so no held-out anchor is seen in
   training) is evaluated as training goes; the weights with the best held-out loss are kept,
   so the held-out loss is never worse than the untrained head's.

Why identity initialisation: an untrained (or early-stopped-at-step-0) head is exactly the
encoder as it was, so adding a head can never silently make an index worse, and training
starts from the encoder's own geometry instead of a random rotation it would first have to
undo. The same map is applied to queries and passages (E5-V uses one model for both), so it can
also be applied to the image embeddings of a cross-modal backbone: the head lives in the shared
space, not in one modality.

Applying a head needs numpy only; training needs torch (the ``checkpoints`` extra).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from indexer.errors import MoairError
from indexer.head import Evaluation, ProjectionHead, TrainingReport
from indexer.mixture import normalise_rows

TORCH_MISSING = "moair train-head needs torch: pip install 'moair[checkpoints]'"

# Field names accepted in a triples file: ours first, then SimCSE's (which E5-V trains on).
QUERY_KEYS = ("query", "sent0")
POSITIVE_KEYS = ("positive", "sent1")
NEGATIVE_KEYS = ("negative", "hard_neg")
MAX_PROBLEMS_KEPT = 50
SMALL_HEAD_DIM = 1024  # up to this size a head trains fastest on one thread
MAX_HELDOUT = 2000  # held-out triples at most, and training triples sampled for the train loss
EVAL_CHUNK = 500  # evaluation losses are InfoNCE within chunks of this many triples


class Triple(BaseModel):
    """One training example: an anchor, a text that should be close, optionally one that should not."""

    model_config = ConfigDict(frozen=True)

    query: str
    positive: str
    negative: str | None = None


class Triples(list):
    """The usable triples of a file (a ``list[Triple]``) with what was skipped and why."""

    def __init__(
        self, triples: Sequence[Triple] = (), problems: Sequence[str] = (), skipped: int = 0, path: Path | None = None
    ):
        super().__init__(triples)
        self.problems: list[str] = list(problems)  # "line N: reason", the first MAX_PROBLEMS_KEPT
        self.skipped: int = skipped  # how many non-empty lines were skipped
        self.path = path

    def problem_summary(self, limit: int = 5) -> str:
        """A short report of the skipped lines, e.g. for the CLI ("" when none)."""
        if not self.skipped:
            return ""
        shown = "; ".join(self.problems[:limit])
        more = self.skipped - min(limit, len(self.problems))
        return f"skipped {self.skipped} line(s): {shown}" + (f"; and {more} more" if more > 0 else "")


def _field(record: dict, keys: tuple[str, ...]) -> tuple[str | None, object]:
    for key in keys:
        if key in record:
            return key, record[key]
    return None, None


def _parse_line(record: object) -> Triple | str:
    """A Triple, or the reason the record is unusable."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    values: dict[str, str | None] = {}
    fields = (("query", QUERY_KEYS, True), ("positive", POSITIVE_KEYS, True), ("negative", NEGATIVE_KEYS, False))
    for name, keys, required in fields:
        key, value = _field(record, keys)
        if key is None or value is None:
            if required:
                return f"missing {' / '.join(repr(k) for k in keys)}"
            values[name] = None
            continue
        if not isinstance(value, str):
            return f"{key!r} must be a string, got {type(value).__name__}"
        value = value.strip()
        if not value:
            if required:
                return f"{key!r} is empty"
            value = None  # an empty optional negative is treated as absent
        values[name] = value
    if values["negative"] is not None and values["negative"] == values["positive"]:
        return "positive and negative are the same text"
    return Triple(**values)


def read_triples(path: str | os.PathLike) -> Triples:
    """Read a jsonl file of triples, one object per line with ``query``, ``positive`` and an
    optional ``negative`` (or SimCSE's ``sent0``, ``sent1``, ``hard_neg``). Empty lines are
    ignored; bad lines are skipped and listed in ``.problems``. Raises MoairError for a missing
    or non-UTF-8 file, or one with no usable triple."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MoairError(f"no triples file at {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise MoairError(
            f"{path} is not UTF-8 text (line {line}, byte {error.start}); save it as UTF-8 jsonl"
        ) from None
    triples: list[Triple] = []
    problems: list[str] = []
    skipped = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            parsed: Triple | str = _parse_line(json.loads(line))
        except json.JSONDecodeError as error:
            parsed = f"bad JSON ({error.msg} at column {error.colno})"
        except RecursionError:
            parsed = "bad JSON (nested too deeply)"
        if isinstance(parsed, Triple):
            triples.append(parsed)
            continue
        skipped += 1
        if len(problems) < MAX_PROBLEMS_KEPT:
            problems.append(f"line {number}: {parsed}")
    result = Triples(triples, problems, skipped, path)
    if not triples:
        detail = f" ({result.problem_summary()})" if skipped else " (the file is empty)"
        raise MoairError(
            f"no usable triple in {path}{detail}; each line needs a JSON object with 'query' and 'positive'"
            " (and optionally 'negative')"
        )
    return result


Embed = Callable[[list[str]], np.ndarray]


def _embed_unique(
    texts: list[str], embed: Embed, what: str, chunk: int, done: Callable[[int], None]
) -> tuple[np.ndarray, dict[str, int]]:
    """Embed each distinct text once; returns the rows and each text's row number."""
    unique = list(dict.fromkeys(texts))
    parts = []
    for start in range(0, len(unique), chunk):
        batch = unique[start : start + chunk]
        rows = np.asarray(embed(batch), dtype=np.float32)
        if rows.ndim != 2 or rows.shape[0] != len(batch):
            raise MoairError(f"the {what} embedder returned shape {rows.shape} for {len(batch)} texts")
        if not np.isfinite(rows).all():
            raise MoairError(f"the {what} embedder returned non-finite values")
        parts.append(rows)
        done(len(batch))
    return normalise_rows(np.concatenate(parts)), {text: i for i, text in enumerate(unique)}


def _split(triples: Sequence[Triple], holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/held-out split by whole queries (about ``holdout`` of the triples held out)."""
    groups: dict[str, list[int]] = {}
    for i, triple in enumerate(triples):
        groups.setdefault(triple.query, []).append(i)
    if holdout <= 0:
        return np.arange(len(triples)), np.zeros(0, dtype=np.int64)
    if len(groups) < 2:
        raise MoairError("a held-out split needs triples with at least 2 different queries (or holdout=0)")
    keys = list(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    wanted = min(MAX_HELDOUT, max(1, round(holdout * len(triples))))
    held: list[int] = []
    for g in order:
        if len(held) >= wanted:
            break
        if len(held) + len(groups[keys[g]]) >= len(triples):
            continue  # keep at least one query for training
        held.extend(groups[keys[g]])
    held_set = set(held)
    train = np.array([i for i in range(len(triples)) if i not in held_set], dtype=np.int64)
    return train, np.array(sorted(held), dtype=np.int64)


def _optimise(
    info_nce, evaluate, weight, eye, train_idx, steps, batch_size, lr, identity_pull, eval_every, seed, progress
):
    """The training loop: seeded epochs of shuffled batches, AdamW on the head's matrix alone,
    an evaluation every ``eval_every`` steps; returns the matrix with the best held-out loss."""
    import torch

    optimiser = torch.optim.AdamW([weight], lr=lr, weight_decay=0.0)  # decay would pull to 0, not to I
    rng = np.random.default_rng(seed)
    evaluations = [evaluate(0)]
    best, best_weight = evaluations[0], weight.detach().clone()
    order, cursor = rng.permutation(train_idx), 0
    for step in range(1, steps + 1):
        if cursor + min(batch_size, len(order)) > len(order):
            order, cursor = rng.permutation(train_idx), 0
        batch = torch.from_numpy(order[cursor : cursor + batch_size])
        cursor += len(batch)
        loss = info_nce(batch)
        if identity_pull > 0:
            loss = loss + identity_pull * (weight - eye).pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress is not None:
            progress(step, steps, loss.item())
        if step % eval_every == 0 or step == steps:
            evaluation = evaluate(step)
            evaluations.append(evaluation)
            if evaluation.heldout_loss is None or evaluation.heldout_loss < best.heldout_loss:
                best, best_weight = evaluation, weight.detach().clone()
    return best_weight.numpy().astype(np.float32), best, evaluations


def train_head(
    triples: Sequence[Triple],
    embed_queries: Embed,
    embed_passages: Embed,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-4,
    temperature: float = 0.05,
    holdout: float = 0.2,
    seed: int = 0,
    identity_pull: float = 0.0,
    eval_every: int = 10,
    encoder: str | None = None,
    encoder_version: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    embed_progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> tuple[ProjectionHead, TrainingReport]:
    """Train a projection head on frozen embeddings of ``triples`` (see the module docstring).

    ``embed_queries`` embeds anchors, ``embed_passages`` positives and negatives; both return
    L2-normalised float32 rows. ``progress(step, steps, batch_loss)`` is called after every
    step, ``embed_progress(done, total)`` after every embedding chunk. The head returned holds
    the weights with the best held-out loss (the identity if training never beat it); with
    ``holdout=0`` it holds the last step's weights. ``threads``: torch's intra-op threads while
    training (set process-wide, restored after); by default 1 for heads up to 1024-d, where
    more threads only add overhead (several times slower on a busy machine), else torch's own."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise MoairError(TORCH_MISSING) from None
    if not triples:
        raise MoairError("no triples to train a projection head on")
    if steps < 0 or batch_size < 1 or lr <= 0 or temperature <= 0 or not 0 <= holdout < 1 or eval_every < 1:
        raise MoairError("train-head needs steps >= 0, batch size >= 1, lr > 0, temperature > 0, 0 <= holdout < 1")
    started = time.perf_counter()
    triples = list(triples)

    # 1. embed each distinct text once with the frozen encoder
    queries = [t.query for t in triples]
    passages = [t.positive for t in triples] + [t.negative for t in triples if t.negative is not None]
    total_texts = len(set(queries)) + len(set(passages))
    done = [0]

    def count(n: int) -> None:
        done[0] += n
        if embed_progress is not None:
            embed_progress(done[0], total_texts)

    query_rows, query_index = _embed_unique(queries, embed_queries, "query", 64, count)
    passage_rows, passage_index = _embed_unique(passages, embed_passages, "passage", 64, count)
    if query_rows.shape[1] != passage_rows.shape[1]:
        raise MoairError(
            f"query embeddings are {query_rows.shape[1]}-d but passage embeddings {passage_rows.shape[1]}-d"
        )
    dim = int(query_rows.shape[1])
    embed_seconds = time.perf_counter() - started

    # 2. per-triple tensors and the ids used to mask false negatives
    anchors = torch.from_numpy(query_rows[[query_index[t.query] for t in triples]])
    positives = torch.from_numpy(passage_rows[[passage_index[t.positive] for t in triples]])
    has_negative = torch.tensor([t.negative is not None for t in triples])
    negatives = torch.from_numpy(
        passage_rows[[passage_index[t.negative] if t.negative is not None else 0 for t in triples]]
    )
    query_id = torch.tensor([query_index[t.query] for t in triples])
    positive_id = torch.tensor([passage_index[t.positive] for t in triples])
    negative_id = torch.tensor([passage_index[t.negative] if t.negative is not None else -1 for t in triples])

    train_idx, held_idx = _split(triples, holdout, seed)
    held_t = torch.from_numpy(held_idx)
    eye = torch.eye(dim)
    weight = torch.nn.Parameter(eye.clone())

    def project(rows):
        return F.normalize(rows @ weight.T, dim=-1)

    def info_nce(idx):
        """InfoNCE of the triples ``idx`` with all their positives and hard negatives as candidates."""
        a, p, n = project(anchors[idx]), project(positives[idx]), project(negatives[idx])
        logits = a @ torch.cat([p, n]).T / temperature
        same = torch.eye(len(idx), dtype=torch.bool)
        # another triple's positive is no negative when it answers the same query or is the same text
        q, p_id = query_id[idx], positive_id[idx]
        false_pos = (q[:, None] == q[None, :]) | (p_id[:, None] == p_id[None, :])
        false_neg = negative_id[idx][None, :] == positive_id[idx][:, None]
        mask = torch.cat([false_pos & ~same, false_neg | ~has_negative[idx][None, :].expand(len(idx), -1)], dim=1)
        logits = logits.masked_fill(mask, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(idx)))

    def chunked_loss(idx) -> float:
        chunks = [idx[start : start + EVAL_CHUNK] for start in range(0, len(idx), EVAL_CHUNK)]
        return sum(float(info_nce(chunk)) * len(chunk) for chunk in chunks) / len(idx)

    train_sample = torch.from_numpy(np.sort(np.random.default_rng(seed + 1).permutation(train_idx)[:MAX_HELDOUT]))

    @torch.no_grad()
    def evaluate(step: int) -> Evaluation:
        train_loss = chunked_loss(train_sample)
        if len(held_t) == 0:
            return Evaluation(step=step, train_loss=train_loss)
        accuracy = None
        with_negative = held_t[has_negative[held_t]]
        if len(with_negative):
            a, p = project(anchors[with_negative]), project(positives[with_negative])
            n = project(negatives[with_negative])
            accuracy = int(((a * p).sum(-1) > (a * n).sum(-1)).sum()) / len(with_negative)
        return Evaluation(
            step=step, train_loss=train_loss, heldout_loss=chunked_loss(held_t), heldout_accuracy=accuracy
        )

    # 3. train
    train_started = time.perf_counter()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or (1 if dim <= SMALL_HEAD_DIM else threads_before))
    try:
        matrix, best, evaluations = _optimise(
            info_nce, evaluate, weight, eye, train_idx, steps, batch_size, lr, identity_pull, eval_every, seed, progress
        )
    finally:
        torch.set_num_threads(threads_before)
    train_seconds = time.perf_counter() - train_started

    before = evaluations[0]
    report = TrainingReport(
        triples=len(triples),
        train_triples=len(train_idx),
        heldout_triples=len(held_idx),
        dim=dim,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        identity_pull=identity_pull,
        seed=seed,
        best_step=best.step,
        evaluations=evaluations,
        train_loss_before=before.train_loss,
        train_loss_after=best.train_loss,
        heldout_loss_before=before.heldout_loss,
        heldout_loss_after=best.heldout_loss,
        heldout_accuracy_before=before.heldout_accuracy,
        heldout_accuracy_after=best.heldout_accuracy,
        embed_seconds=round(embed_seconds, 3),
        train_seconds=round(train_seconds, 3),
        seconds=round(time.perf_counter() - started, 3),
    )
    return ProjectionHead(matrix, encoder, encoder_version, report), report
