"""The public API: open an index, add images, search by text, image or both.

from retriever import Engine
with Engine.open("pics.moair", create=True) as engine:
    engine.add(["~/Pictures"])
    for hit in engine.search("two dogs on a beach", k=5):
        print(hit.score, hit.path, hit.evidence)
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from indexer.analyzer import CHECK_TEXT, Analyzer
from indexer.encoders import DEFAULT_BACKBONE, DEFAULT_TEXT_EMBEDDER
from indexer.errors import MoairError, NotFound, damaged_database
from indexer.experts import DEFAULT_EXPERTS
from indexer.head import TrainingReport
from indexer.head_training import Triple, read_triples, train_head
from indexer.model_check import ModelCheck, check, not_checked
from indexer.pipeline import ProgressCallback, index_entries, index_paths
from indexer.records import Entry, IndexReport, ItemRecord, Modality, SearchHit, shown_path
from indexer.store import DB_NAME, Batch, IndexConfig, IndexSettings, IndexStats, Store, VerifyReport, is_index_dir
from retriever.generative import GENERATORS
from retriever.generative.ask import SUPPORT_FLOOR, Answer, AskEvent, answer_events
from retriever.generative.records import Candidate, Generator
from retriever.generative.rerank import candidate
from retriever.generative.rerank import rerank as rerank_hits
from retriever.query import DEFAULT_ASK_BUDGET, MAX_ASK_K, MAX_K, QueryEncoder, SearchRequest, check_budget
from retriever.search import search_hits

CHANCE_PROBES = 64  # training queries that measure how a head moves the query-to-item chance level
GENERATOR_LOADS_LATER = (
    "loaded on first use (rerank, ask); `moair doctor --generator` loads it now "
    "(Gemma's first load converts it: 1-2 minutes)"
)
HeadProgress = Callable[[str, int, int], None]  # (stage, done, total) while a head is trained


def _damage_said(method):
    """``method`` with SQLite finding the database damaged (random bytes in a page, a truncated
    file) said as a ``DamagedIndex`` naming the index; a full disk or a lock stays what it is."""

    def said(engine: Engine, error: sqlite3.DatabaseError) -> BaseException:
        if isinstance(error, sqlite3.OperationalError):
            return error
        return damaged_database(engine.store.path / DB_NAME, error)

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.DatabaseError as e:
                raise said(self, e) from None

        return generator

    @functools.wraps(method)
    def plain(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise said(self, e) from None

    return plain


class Engine:
    """An open moair index with the models that built it."""

    def __init__(self, store: Store, analyzer: Analyzer, device: str = "auto", dtype: str = "auto") -> None:
        self.store = store
        self.analyzer = analyzer
        self._device, self._dtype = device, dtype
        self._generator = None
        # what ``generator()`` hands out, given the model: the server wraps it so that generating
        # does not count as reading the index (a reload need not wait for an answer being written)
        self.generator_wrapper: Callable[[object], object] | None = None
        self.queries = QueryEncoder(analyzer)

    @classmethod
    def open(
        cls,
        path: str | Path,
        create: bool = False,
        text_embedder: str | None = None,
        backbone: str | None = None,
        experts: Sequence[str] | None = None,
        checkpoint: str | Path | None = None,
        expert_checkpoints: dict[str, str | Path] | None = None,
        device: str = "auto",
        dtype: str = "auto",
        model_name: str | None = None,
    ) -> Engine:
        """Open the index at ``path``; with ``create``, make a new one there if none exists.
        ``text_embedder``, ``backbone`` (with ``checkpoint``, a local folder, for "clip", "e5v",
        "moai" and "openclip"; for "openclip" also one weights file with its architecture
        ``model_name``), ``experts`` and ``expert_checkpoints`` (more experts from local folders, e.g.
        {"owlv2": ..., "panoptic": ...}) apply to a new index (None: the defaults, e5-small,
        efficientnet-lite3 and the packaged experts); an existing one keeps its own, and asking it
        for other models is an error. ``device`` and ``dtype`` place checkpoint models
        (auto: CUDA and float16 with a GPU)."""
        if not isinstance(path, (str, os.PathLike)):
            raise MoairError(f"Engine.open() takes the index's path (a str or Path), not {type(path).__name__}")
        path = Path(path).expanduser()
        if is_index_dir(path):
            store = Store.open(path, writable=create)
            try:
                _refuse_other_models(
                    path, store.config, text_embedder, backbone, checkpoint, expert_checkpoints, experts
                )
                return cls(store, Analyzer.for_index(store.config, device=device, dtype=dtype), device, dtype)
            except BaseException:
                store.close()
                raise
        if not create:
            Store.open(path)  # raises the right message for a missing or foreign path
        runtime = {"device": device, "dtype": dtype}
        named = {"model_name": model_name} if model_name else {}
        options = {"checkpoint": str(checkpoint), **named, **runtime} if checkpoint else None
        expert_options = {
            name: {"checkpoint": str(folder), **runtime} for name, folder in (expert_checkpoints or {}).items()
        }
        analyzer = Analyzer(
            experts=[*(DEFAULT_EXPERTS if experts is None else experts), *expert_options],
            text_embedder=text_embedder or DEFAULT_TEXT_EMBEDDER,
            backbone=backbone or DEFAULT_BACKBONE,
            backbone_options=options,
            expert_options=expert_options,
        )
        analyzer.require_working_models()  # a broken install leaves no empty index behind
        return cls(Store.create(path, analyzer.index_config()), analyzer, device, dtype)

    @_damage_said
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    @contextlib.contextmanager
    def writer(self) -> Iterator[Engine]:
        """A writable view of this index for the length of the block, sharing this engine's loaded
        models: how a long-lived reader (the server) changes the index now and then. The write lock
        is held inside the block only; this engine sees the change after ``reload()``."""
        view = Engine(Store.open(self.store.path, writable=True), self.analyzer, self._device, self._dtype)
        try:
            yield view
        finally:
            view.close()

    def _writable(self) -> Store:
        if not self.store.writable:
            writable = Store.open(self.store.path, writable=True)  # fails on the lock before anything closes
            self.store.close()
            self.store = writable
        return self.store

    @_damage_said
    def add(
        self, paths: Iterable[str | Path], progress: ProgressCallback | None = None, prune: bool = False
    ) -> IndexReport:
        """Index image files and folders (recursively). Unchanged files are skipped, known content is
        not embedded again; with ``prune``, files deleted from the given folders leave the index."""
        paths = _path_list(paths, "add")
        return index_paths(self._writable(), self.analyzer, paths, progress=progress, prune=prune)

    @_damage_said
    def remove(self, paths: Iterable[str | Path]) -> int:
        """Take files (by path) or entries (by key) out of the index; an item whose last path goes
        is deleted (its vector becomes a tombstone until compaction). Returns how many were removed."""
        paths = _path_list(paths, "remove")
        keys = []
        for raw in paths:
            keys.append(str(raw))
            as_path = str(Path(raw).expanduser().absolute())
            keys.append(as_path)
        store = self._writable()
        found = list(dict.fromkeys(store.catalog.paths_of(keys)))
        if found:
            store.commit(Batch(removed_paths=found))
            store.maintain()
            store.save()
        return len(found)

    @_damage_said
    def add_entries(self, entries: Iterable[Entry], progress: ProgressCallback | None = None) -> IndexReport:
        """Index items that are not photo files: each has a key (reported as its path in hits), a
        text, an image file, or both. A key already indexed is not analysed again."""
        return index_entries(self._writable(), self.analyzer, entries, progress=progress)

    @_damage_said
    def search(
        self,
        text: str | None = None,
        image: str | Path | bytes | None = None,
        k: int = 10,
        modality: Modality | None = None,
        min_score: float | None = None,
        max_drop: float | None = None,
        rerank: int = 0,
        time_budget: float | None = None,
    ) -> list[SearchHit]:
        """Top-``k`` items for a text query, an image query, or both (image + text). With
        ``modality`` ("image", "text" or "image,text"), only items holding exactly that are searched.
        ``min_score`` drops hits scoring below it; ``max_drop`` ends the list at the first score
        that falls more than that below the hit before it (a score-gap cut). With ``rerank`` N
        (text queries), the top N hits are re-scored by the generator (``generator()``) as P("Yes")
        that they match, given in ``rerank_score``, and ordered by it; ``time_budget`` (seconds)
        stops the re-scoring when it runs out (the hits not judged by then keep their order; the
        generator's first load does not count)."""
        started = time.monotonic()
        request = SearchRequest(text, image, k, modality, min_score, max_drop, rerank, time_budget)
        if len(self.store) == 0:
            return []
        query = self.queries.encode(request, self.store)
        text = query.text
        hits = search_hits(
            self.store,
            query.row,
            max(k, rerank) + (query.reference is not None),
            query.modality,
            min_score,
            max_drop,
            text,
            query.perception,
        )
        if query.reference is not None:
            hits = [
                h.model_copy(update={"rank": rank})
                for rank, h in enumerate((h for h in hits if h.item_id != query.reference), start=1)
            ]
        deadline = started + time_budget if time_budget is not None else None
        if rerank and hits and (deadline is None or time.monotonic() < deadline):  # no time left: no model loaded
            records = {r.item_id: r for r in self.store.catalog.items([h.item_id for h in hits[:rerank]])}
            generator, loading = self._loaded_generator()
            hits = rerank_hits(
                hits, records, text, generator, rerank, deadline + loading if deadline is not None else None
            )
        return hits[:k]

    @_damage_said
    def similar(self, item_id: int, k: int = 10, modality: Modality | None = None) -> list[SearchHit]:
        """ "More like this": items like a stored one, searched as an image query of it would be
        (its stored vectors, no image analysed again); the item itself is left out."""
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            raise MoairError(f"similar() takes an item id (a whole number), not {type(item_id).__name__} {item_id!r}")
        records = self.store.catalog.items([item_id])
        if not records:
            raise NotFound(f"{item_id} is not in the index")
        query = self.store.query_layout.item_query(self.store.item_vectors([item_id])[0])
        hits = [
            h
            for h in search_hits(
                self.store, query, min(k + 1, MAX_K), modality, None, None, None, records[0].perception
            )
            if h.item_id != item_id
        ]
        return [h.model_copy(update={"rank": rank}) for rank, h in enumerate(hits[:k], start=1)]

    @_damage_said
    def reload(self) -> None:
        """See what other processes committed since this engine opened (a reader's view is fixed
        at open)."""
        writable = self.store.writable
        self.store.close()
        self.store = Store.open(self.store.path, writable=writable)

    @_damage_said
    def verify(self) -> VerifyReport:
        """Check the whole index: SQLite's integrity, every item's vector and descriptions, the
        vector files' checksums, FAISS against SQLite. Vector files found damaged when the index
        opened are rebuilt from SQLite and listed as repaired."""
        store = self.store
        return VerifyReport(
            path=str(store.path), problems=store.verify(), repaired=store.repaired_at_open, saved=store.writable
        )

    @_damage_said
    def stats(self) -> IndexStats:
        """What the index holds and how it searches."""
        return self.store.stats()

    @_damage_said
    def configure(
        self,
        index_type: str | None = None,
        memory_budget: int | None = None,
        recall_target: float | None = None,
        shard_size: int | None = None,
    ) -> None:
        """Set how the vector index is chosen (``index_type``: "auto" or a faiss index_factory
        string such as "IVF4096_HNSW32,SQ8"; ``memory_budget`` in bytes), tuned (``recall_target``:
        recall@10 against exact search) and split into files (``shard_size`` vectors each).
        Applied by the next ``add``, ``remove`` or ``optimize``; None keeps the current value."""
        self._writable().configure(IndexSettings(index_type, memory_budget, recall_target, shard_size))

    @_damage_said
    def optimize(self, progress: ProgressCallback | None = None) -> str:
        """Rebuild the vector index from the stored vectors: tombstones dropped, the index type
        chosen again, trained on a fresh sample, its search knob tuned to the recall target.
        Returns a one-line summary."""
        return self._writable().optimize(progress=progress)

    def check_models(self, generator: bool = False) -> list[ModelCheck]:
        """Load and run each model of this index once (see ``Analyzer.check_models``); with
        ``generator``, also the generative model (rerank, answers), which is otherwise loaded on
        first use and only reported with its packages here."""
        results = self.analyzer.check_models()
        name = "moai" if self.analyzer.backbone.name == "moai" else "gemma"
        plugin = GENERATORS.get(name)
        if generator:
            results.append(
                check("generator", name, plugin, lambda: self.generator().judge(CHECK_TEXT, [Candidate(0, CHECK_TEXT)]))
            )
        else:
            results.append(not_checked("generator", name, plugin, GENERATOR_LOADS_LATER))
        return results

    def generator(self) -> Generator:
        """The generative model for rerank and answers: the index's MoAI backbone when it has one
        (the loaded model is shared), else the packaged Gemma-3 270M reading verbalizations."""
        if self._generator is None:
            backbone = self.analyzer.backbone
            if backbone.name == "moai":
                self._generator = GENERATORS.create("moai", backbone=backbone)
            else:
                self._generator = GENERATORS.create("gemma", device=self._device, dtype=self._dtype)
        return self._generator if self.generator_wrapper is None else self.generator_wrapper(self._generator)

    def reranked_by(self, hits: Sequence[SearchHit]) -> str | None:
        """The generator whose P("Yes") ordered ``hits`` (``search(rerank=N)``), or None."""
        return self.generator().version if any(h.rerank_score is not None for h in hits) else None

    def _loaded_generator(self) -> tuple[object, float]:
        """The generator and the seconds loading it took now (next to none once it is loaded): a
        time budget counts generative work, not the first load (Gemma's converts it: 1-2 minutes)."""
        started = time.monotonic()
        generator = self.generator()
        return generator, time.monotonic() - started

    @_damage_said
    def ask_stream(
        self,
        question: str,
        k: int = 5,
        time_budget: float = DEFAULT_ASK_BUDGET,
        min_score: float = SUPPORT_FLOOR,
        max_new_tokens: int = 128,
    ) -> Iterator[AskEvent]:
        """Answer ``question`` from the collection, as events: the sources (the top ``k`` hits that
        score at least ``min_score``), the answer's pieces as they are generated, then the whole
        ``Answer`` with its citations. With no source the answer is "not found in the collection"
        and nothing is generated; the time budget (seconds, retrieval included, the generator's
        first load not) ends the answer."""
        started = time.monotonic()
        if not isinstance(question, str) or not question.strip():
            raise MoairError("give a question")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_ASK_K:
            raise MoairError(
                f"k must be a whole number from 1 to {MAX_ASK_K} (the items an answer is written from), got {k!r}"
            )
        check_budget(time_budget)
        hits = self.search(question, k=k)
        records = {r.item_id: candidate(r) for r in self.store.catalog.items([h.item_id for h in hits])}
        generator, deadline = _NoGenerator(), started + time_budget
        if time.monotonic() < deadline and any(h.score >= min_score for h in hits):
            generator, loading = self._loaded_generator()
            deadline += loading
        yield from answer_events(
            question.strip(), hits, records, generator, started, deadline, min_score, max_new_tokens
        )

    def ask(
        self, question: str, k: int = 5, time_budget: float = DEFAULT_ASK_BUDGET, min_score: float = SUPPORT_FLOOR
    ) -> Answer:
        """The whole answer of ``ask_stream``."""
        *_, answer = self.ask_stream(question, k=k, time_budget=time_budget, min_score=min_score)
        return answer

    def head_spaces(self) -> list[str]:
        """The embedding spaces a projection head can be trained for: the text embedder's
        ("language": caption and OCR blocks) and, with a cross-modal backbone, its shared space ("visual")."""
        return ["language"] + (["visual"] if self.analyzer.backbone.cross_modal else [])

    @_damage_said
    def train_head(
        self,
        triples: str | Path | Sequence[Triple],
        spaces: Sequence[str] | None = None,
        progress: HeadProgress | None = None,
        **training,
    ) -> dict[str, TrainingReport]:
        """Train a projection head per embedding space on text triples (a jsonl file or ``Triple``s;
        E5-V's recipe, see ``indexer.head_training``) and search through them from now on; the stored vectors
        are projected, nothing is embedded again. ``spaces`` defaults to all of ``head_spaces()``;
        ``training`` goes to ``indexer.head_training.train_head`` (steps, batch_size, lr, seed, ...)."""
        if isinstance(triples, (str, Path)):
            triples = read_triples(triples)
        spaces = self._head_spaces(spaces)
        store = self._writable()

        def report_to(stage: str):
            return (lambda done, total, *_: progress(stage, done, total)) if progress else None

        heads, reports, probes = {}, {}, {}
        probe_texts = list(dict.fromkeys(t.query for t in triples))[:CHANCE_PROBES]
        for space in spaces:
            if space == "language":
                encoder = self.analyzer.text_embedder
                embed_queries, embed_passages = encoder.embed_queries, encoder.embed_passages
            else:
                encoder = self.analyzer.backbone
                embed_queries = embed_passages = encoder.embed_texts
            heads[space], reports[space] = train_head(
                triples,
                embed_queries,
                embed_passages,
                encoder=encoder.name,
                encoder_version=encoder.version,
                progress=report_to(f"training the {space} head"),
                embed_progress=report_to(f"embedding texts ({space})"),
                **training,
            )
            probes[space] = embed_queries(probe_texts)  # texts unrelated to the photos: the query chance level
        store.set_heads(heads, probes, progress=report_to("projecting the index"))
        return reports

    @_damage_said
    def remove_heads(self, spaces: Sequence[str] | None = None) -> None:
        """Search without projection heads again (all, or those of ``spaces``)."""
        spaces = self._head_spaces(spaces)
        self._writable().set_heads({space: None for space in spaces})

    def _head_spaces(self, spaces: Sequence[str] | None) -> list[str]:
        known = self.head_spaces()
        for space in spaces or ():
            if space not in known:
                raise MoairError(f"no {space!r} head for this index; it has: {', '.join(known)}")
        return list(spaces or known)

    @_damage_said
    def inspect(self, path_or_id: str | int) -> ItemRecord:
        """The stored perception and verbalizations of one item, by file path or item id."""
        item_id = None
        if isinstance(path_or_id, int) or (isinstance(path_or_id, str) and path_or_id.isdigit()):
            item_id = int(path_or_id)
        else:
            item_id = self.store.catalog.item_id_for_path(path_or_id)  # an entry's key
            if item_id is None:
                item_id = self.store.catalog.item_id_for_path(str(Path(path_or_id).expanduser().absolute()))
        records = self.store.catalog.items([item_id]) if item_id is not None else []
        if not records:
            raise NotFound(f"{path_or_id} is not in the index")
        return records[0]


def _path_list(paths, what: str) -> list[str | os.PathLike]:
    """One path or an iterable of paths (str or Path); anything else is a ``MoairError``."""
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    if isinstance(paths, (bytes, bytearray)) or not isinstance(paths, Iterable):
        raise MoairError(f"{what}() takes a path or a list of paths (str or Path), not {type(paths).__name__}")
    listed = list(paths)
    wrong = [p for p in listed if not isinstance(p, (str, os.PathLike))]
    if wrong:
        raise MoairError(f"{what}() takes paths as str or Path, not {type(wrong[0]).__name__} {wrong[0]!r}")
    for path in listed:
        try:
            os.fsencode(path)
        except UnicodeEncodeError:  # a lone surrogate that no file name's bytes decode to
            raise MoairError(
                f"{what}(): {shown_path(str(path))!r} is not a file name (it holds a lone UTF-16 surrogate)"
            ) from None
    return listed


def _refuse_other_models(
    path: Path,
    config: IndexConfig,
    text_embedder: str | None,
    backbone: str | None,
    checkpoint,
    expert_checkpoints,
    experts: Sequence[str] | None,
) -> None:
    """An existing index keeps the models it was built with: asking for others (anything but
    None, "not asked") is a mistake to say out loud, not to ignore (its stored vectors would not
    match them)."""
    new_index = "a different one needs a new index (another --index path)"
    for what, asked, built in (
        ("text embedder", text_embedder, config.text_embedder.name),
        ("backbone", backbone, config.backbone.name),
    ):
        if asked is not None and asked != built:
            raise MoairError(f"{path} was built with the {built} {what}; {new_index}")
    built_backbone = config.backbone
    if checkpoint and str(Path(checkpoint).expanduser().absolute()) != built_backbone.options.get("checkpoint"):
        raise MoairError(
            f"{path} was built with the {built_backbone.name} backbone {built_backbone.options or ''}; {new_index}"
        )
    checkpoint_experts = {e.name: e.options.get("checkpoint") for e in config.experts if e.options}
    for name, folder in (expert_checkpoints or {}).items():
        if checkpoint_experts.get(name) != str(Path(folder).expanduser().absolute()):
            raise MoairError(f"{path} was built without the {name} expert from {folder}; {new_index}")
    built_experts = {e.name for e in config.experts} - set(checkpoint_experts)
    if experts is not None and set(experts) != built_experts:
        raise MoairError(f"{path} was built with the experts {', '.join(sorted(built_experts))}; {new_index}")


class _NoGenerator:
    """Stands in when no item supports an answer or no time is left: nothing is generated, no
    model is loaded."""

    version = "none"

    def stream(self, *args, **kwargs) -> Iterator[str]:
        return iter(())
