"""Reading M-BEIR (TIGER-Lab/M-BEIR) as UniIR reads it.

Layout, relative to the M-BEIR root::

    query/{split}/mbeir_{dataset}_task{N}_{split}.jsonl
    cand_pool/local/mbeir_{dataset}_task{N}_cand_pool.jsonl   (MSCOCO test: ..._task{N}_test_cand_pool.jsonl)
    cand_pool/global/mbeir_union_{split}_cand_pool.jsonl
    qrels/{split}/mbeir_{dataset}_task{N}_{split}_qrels.txt
    instructions/query_instructions.tsv
    mbeir_images/...                                           (img_path fields are relative to the root)

Every malformed record is an ``MbeirFormatError`` naming the file and line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from indexer.errors import MoairError

Modality = Literal["text", "image", "image,text"]

DATASET_IDS = {
    "visualnews": 0,
    "fashion200k": 1,
    "webqa": 2,
    "edis": 3,
    "nights": 4,
    "oven": 5,
    "infoseek": 6,
    "fashioniq": 7,
    "cirr": 8,
    "mscoco": 9,
}
# task id -> (query modality, candidate modality); task 5 exists in UniIR's table but is unused.
TASK_MODALITIES: dict[int, tuple[str, str]] = {
    0: ("text", "image"),
    1: ("text", "text"),
    2: ("text", "image,text"),
    3: ("image", "text"),
    4: ("image", "image"),
    5: ("image", "text,image"),
    6: ("image,text", "text"),
    7: ("image,text", "image"),
    8: ("image,text", "image,text"),
}
EVALUATED_TASKS = [
    "visualnews_task0",
    "mscoco_task0",
    "fashion200k_task0",
    "webqa_task1",
    "edis_task2",
    "webqa_task2",
    "visualnews_task3",
    "mscoco_task3",
    "fashion200k_task3",
    "nights_task4",
    "oven_task6",
    "infoseek_task6",
    "fashioniq_task7",
    "cirr_task7",
    "oven_task8",
    "infoseek_task8",
]
DEFAULT_KS = (1, 5, 10)
FASHION_KS = (10, 20, 50)  # UniIR reports Recall@10/20/50 for Fashion200K and FashionIQ


def dataset_of(qid_or_did: str) -> str:
    """The dataset id part of an M-BEIR id: '9:1234' -> '9'."""
    return qid_or_did.split(":", 1)[0]


class MbeirFormatError(MoairError):
    """A file that does not follow the M-BEIR format; the message names the file and line."""


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")

    qid: str
    query_txt: str | None = None
    query_img_path: str | None = None
    query_modality: Modality
    query_src_content: Any = None  # a JSON string or null
    pos_cand_list: list[str] = []
    neg_cand_list: list[str] = []
    task_id: int | None = None

    @property
    def dataset_id(self) -> str:
        return dataset_of(self.qid)


class Candidate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    did: str
    txt: str | None = None
    img_path: str | None = None
    modality: Modality
    src_content: Any = None  # some union-pool candidates have no such key

    @property
    def dataset_id(self) -> str:
        return dataset_of(self.did)


@dataclass
class Qrels:
    """Relevant dids per qid (judgments with relevance > 0), and each qid's task id."""

    relevant: dict[str, list[str]] = field(default_factory=dict)
    task_of: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskName:
    """'mscoco_task0' -> dataset 'mscoco', task 0."""

    dataset: str
    task_id: int

    @classmethod
    def parse(cls, name: str) -> TaskName:
        dataset, _, task = name.lower().rpartition("_task")
        if dataset not in DATASET_IDS or not task.isdigit() or int(task) not in TASK_MODALITIES:
            raise MoairError(
                f"unknown M-BEIR task {name!r}; tasks look like mscoco_task0 ({', '.join(EVALUATED_TASKS)})"
            )
        return cls(dataset, int(task))

    def __str__(self) -> str:
        return f"{self.dataset}_task{self.task_id}"

    @property
    def ks(self) -> tuple[int, ...]:
        return FASHION_KS if self.dataset in ("fashion200k", "fashioniq") else DEFAULT_KS


@dataclass(frozen=True)
class Layout:
    """Where each file of an M-BEIR root is."""

    root: Path

    def queries(self, task: TaskName, split: str) -> Path:
        return self.root / "query" / split / f"mbeir_{task}_{split}.jsonl"

    def local_pool(self, task: TaskName, split: str) -> Path:
        if task.dataset == "mscoco" and split == "test":
            return self.root / "cand_pool" / "local" / f"mbeir_{task}_test_cand_pool.jsonl"
        return self.root / "cand_pool" / "local" / f"mbeir_{task}_cand_pool.jsonl"

    def union_pool(self, split: str) -> Path:
        return self.root / "cand_pool" / "global" / f"mbeir_union_{split}_cand_pool.jsonl"

    def qrels(self, task: TaskName, split: str) -> Path:
        return self.root / "qrels" / split / f"mbeir_{task}_{split}_qrels.txt"

    def instructions(self) -> Path:
        return self.root / "instructions" / "query_instructions.tsv"


Record = TypeVar("Record", Query, Candidate)


def read_jsonl(path: Path, record: type[Record]) -> list[Record]:
    """All records of a jsonl file; blank lines are skipped."""
    out = []
    with _open(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(record.model_validate(json.loads(line)))
            except json.JSONDecodeError as e:
                raise MbeirFormatError(f"{path}:{number}: not valid JSON ({e.msg})") from None
            except ValidationError as e:
                problem = e.errors()[0]
                where = ".".join(str(p) for p in problem["loc"]) or "record"
                raise MbeirFormatError(f"{path}:{number}: {where}: {problem['msg']}") from None
    return out


def read_qrels(path: Path) -> Qrels:
    """``qid 0 did relevance task_id`` per line, as UniIR's ``load_qrel`` reads it."""
    qrels = Qrels()
    with _open(path) as lines:
        for number, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5 or not parts[3].lstrip("-").isdigit() or not parts[4].isdigit():
                raise MbeirFormatError(f"{path}:{number}: expected 'qid 0 did relevance task_id', got {line.strip()!r}")
            qid, _, did, relevance, task_id = parts
            if int(relevance) > 0:
                qrels.relevant.setdefault(qid, []).append(did)
                qrels.task_of.setdefault(qid, int(task_id))
    return qrels


def read_instructions(path: Path) -> dict[tuple[str, str, str], list[str]]:
    """(dataset id, query modality, candidate modality) -> instructions. A header line, then
    query modality, candidate modality, dataset name, dataset id, instruction... (tab separated;
    empty instruction cells are dropped, as UniIR does)."""
    out: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    with _open(path) as lines:
        next(lines, None)
        for number, line in enumerate(lines, start=2):
            parts = line.strip().split("\t")
            if parts == [""]:
                continue
            if len(parts) < 5:
                raise MbeirFormatError(
                    f"{path}:{number}: expected query modality, candidate modality, dataset, dataset id and an "
                    "instruction"
                )
            out[(parts[3].strip(), parts[0].strip(), parts[1].strip())] = [p for p in parts[4:] if p]
    return dict(out)


def format_string(text: str | None) -> str:
    """UniIR's normalisation: strip (and strip double quotes), capitalise the first letter, end
    with a period unless it already ends with . ? or !"""
    text = (text or "").replace("\r", "").strip().strip('"')
    if text:
        text = text[0].upper() + text[1:]
        if text[-1] not in ".?!":
            text += "."
    return text


def candidate_modality(query: Query, pool: dict[str, Candidate], task: TaskName | None = None) -> str:
    """The task's candidate modality: that of the query's first positive from its own dataset
    (OVEN and InfoSeek queries also list positives from the other dataset). UniIR looks positives
    up in the union pool; when the searched pool lacks them, the task's definition says it."""
    own = [did for did in query.pos_cand_list if dataset_of(did) == query.dataset_id] or query.pos_cand_list
    for did in own:
        if did in pool:
            return pool[did].modality
    if task is not None:
        return TASK_MODALITIES[task.task_id][1]
    raise MoairError(f"query {query.qid}: none of its positives is in the candidate pool")


def instruction_for(query: Query, cand_modality: str, instructions: dict[tuple[str, str, str], list[str]]) -> str:
    """The instruction for a query's (dataset, query modality, candidate modality). UniIR draws one
    at random per query; like pyserini's port of UniIR, this takes the first, so runs repeat."""
    key = (query.dataset_id, query.query_modality, cand_modality)
    if not instructions.get(key):
        raise MoairError(f"query {query.qid}: the instructions file has no instruction for {key}")
    return instructions[key][0]


def query_text(query: Query, instruction: str | None) -> str:
    """The text UniIR embeds for a query: ``format_string(f"{instruction} {query_txt}")``, or the
    query text alone without an instruction. An image-only query with an instruction gets the
    instruction alone."""
    if instruction is None:
        return format_string(query.query_txt)
    return format_string(f"{format_string(instruction)} {query.query_txt or ''}")


def _open(path: Path):
    try:
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        raise MbeirFormatError(f"{path}: no such file (is --root an M-BEIR folder?)") from None
    except OSError as e:
        raise MbeirFormatError(f"{path}: cannot read ({e.strerror or e})") from None
