"""The public API: open an index, add images, search by text, image or both.

    from retriever import Engine
    with Engine.open("pics.moair", create=True) as engine:
        engine.add(["~/Pictures"])
        for hit in engine.search("two dogs on a beach", k=5):
            print(hit.score, hit.path, hit.evidence)
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, get_args

import numpy as np

from indexer.encoders import DEFAULT_BACKBONE, DEFAULT_TEXT_EMBEDDER
from indexer.errors import ImageError, MoairError, NotFound, damaged_database
from indexer.head import TrainingReport, Triple, read_triples, train_head
from indexer.experts import DEFAULT_EXPERTS
from indexer.images import load_image
from indexer.mixture import gate
from indexer.model_check import ModelCheck, check, not_checked
from indexer.pipeline import CHECK_TEXT, Analyzer, IndexReport, ProgressCallback, index_entries, index_paths
from indexer.records import Entry, ItemRecord, Modality, SearchHit, shown_path
from indexer.store import DB_NAME, IndexConfig, IndexSettings, IndexStats, Store, VerifyReport, is_index_dir
from indexer.verbalize import verbalize
from retriever.evidence import evidence
from retriever.queries import mostly_text, parse_query
from retriever.generative import GENERATORS
from retriever.generative.ask import SUPPORT_FLOOR, Answer, AskEvent, answer_events
from retriever.generative.records import Candidate
from retriever.generative.rerank import candidate
from retriever.generative.rerank import rerank as rerank_hits

MAX_K = 1000
MAX_RERANK = 100  # hits a generator re-scores at most
MAX_BUDGET = 3600.0  # seconds
DEFAULT_ASK_BUDGET = 60.0
CHANCE_PROBES = 64  # training queries that measure how a head moves the query-to-item chance level
QUERY_EMBEDDINGS_CACHED = 256  # recent query texts: the next page of a search does not embed it again
MODALITIES = get_args(Modality)
GENERATOR_LOADS_LATER = "loaded on first use (rerank, ask); `moair doctor --generator` loads it now (Gemma's first load converts it: 1-2 minutes)"
HeadProgress = Callable[[str, int, int], None]  # (stage, done, total) while a head is trained


def _damage_said(method):
    """``method`` with SQLite finding the database damaged (random bytes in a page, a truncated
    file) said as a ``DamagedIndex`` naming the index; a full disk or a lock stays what it is."""

    def said(engine: "Engine", error: sqlite3.DatabaseError) -> BaseException:
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
        self._query_embedding = functools.lru_cache(maxsize=QUERY_EMBEDDINGS_CACHED)(self._embed_query)

    def _embed_query(self, text: str) -> np.ndarray:
        vector = self.analyzer.text_embedder.embed_queries([text])[0]
        vector.flags.writeable = False  # shared by every search that asks the same text
        return vector

    @classmethod
    def open(
        cls,
        path: str | Path,
        create: bool = False,
        text_embedder: str = DEFAULT_TEXT_EMBEDDER,
        backbone: str = DEFAULT_BACKBONE,
        experts: Sequence[str] = DEFAULT_EXPERTS,
        checkpoint: str | Path | None = None,
        expert_checkpoints: dict[str, str | Path] | None = None,
        device: str = "auto",
        dtype: str = "auto",
        model_name: str | None = None,
    ) -> "Engine":
        """Open the index at ``path``; with ``create``, make a new one there if none exists.
        ``text_embedder``, ``backbone`` (with ``checkpoint``, a local folder, for "clip", "e5v",
        "moai" and "openclip"; for "openclip" also one weights file with its architecture
        ``model_name``), ``experts`` and ``expert_checkpoints`` (more experts from local folders, e.g.
        {"owlv2": ..., "panoptic": ...}) apply to a new index; an existing one keeps its own, and
        asking it for other models is an error. ``device`` and ``dtype`` place checkpoint models
        (auto: CUDA and float16 with a GPU)."""
        if not isinstance(path, (str, os.PathLike)):
            raise MoairError(f"Engine.open() takes the index's path (a str or Path), not {type(path).__name__}")
        path = Path(path).expanduser()
        if is_index_dir(path):
            store = Store.open(path, writable=create)
            try:
                _refuse_other_models(path, store.config, text_embedder, backbone, checkpoint, expert_checkpoints, experts)
                return cls(store, Analyzer.for_index(store.config, device=device, dtype=dtype), device, dtype)
            except BaseException:
                store.close()
                raise
        if not create:
            Store.open(path)  # raises the right message for a missing or foreign path
        runtime = {"device": device, "dtype": dtype}
        named = {"model_name": model_name} if model_name else {}
        options = {"checkpoint": str(checkpoint), **named, **runtime} if checkpoint else None
        expert_options = {name: {"checkpoint": str(folder), **runtime} for name, folder in (expert_checkpoints or {}).items()}
        analyzer = Analyzer(
            experts=[*experts, *expert_options], text_embedder=text_embedder, backbone=backbone,
            backbone_options=options, expert_options=expert_options,
        )
        analyzer.require_working_models()  # a broken install leaves no empty index behind
        return cls(Store.create(path, analyzer.index_config()), analyzer, device, dtype)

    @_damage_said
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    def _writable(self) -> Store:
        if not self.store.writable:
            writable = Store.open(self.store.path, writable=True)  # fails on the lock before anything closes
            self.store.close()
            self.store = writable
        return self.store

    @_damage_said
    def add(self, paths: Iterable[str | Path], progress: ProgressCallback | None = None, prune: bool = False) -> IndexReport:
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
            store.commit(removed_paths=found)
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
        if text is not None and not isinstance(text, str):
            raise MoairError(f"query text must be a string, not {type(text).__name__}")
        text = text.strip() if text else None
        if not text and image is None:
            raise MoairError("give a text query, an image query, or both")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise MoairError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
        if modality is not None and modality not in MODALITIES:
            raise MoairError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        for name, value in (("min_score", min_score), ("max_drop", max_drop)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                raise MoairError(f"{name} must be a number, got {value!r}")
        if max_drop is not None and max_drop < 0:
            raise MoairError(f"max_drop must be 0 or more, got {max_drop!r}")
        if isinstance(rerank, bool) or not isinstance(rerank, int) or not 0 <= rerank <= MAX_RERANK:
            raise MoairError(f"rerank must be a whole number from 0 to {MAX_RERANK}, got {rerank!r}")
        if rerank and not text:
            raise MoairError("rerank needs a text query (the generator is asked whether each hit matches it)")
        _check_budget(time_budget)
        if len(self.store) == 0:
            return []

        parsed = parse_query(text, has_image=image is not None)  # an instruction steers; it is not matched
        text = parsed.text
        if rerank and not text:
            raise MoairError("rerank needs a text to match besides the instruction")
        if modality is None and parsed.wants and self.store.catalog.holds(parsed.wants):
            modality = parsed.wants
        analysis = None
        if image is not None:
            try:
                analysis = self.analyzer.analyze(load_image(image))
            except ImageError as e:
                raise MoairError(f"query image: {e}") from None
        verbal = verbalize(analysis.perception) if analysis else None
        reference = None  # the image a composed query changes: not an answer to it (CIRR leaves it out too)
        if analysis is not None and text:
            reference = self.store.catalog.item_id_for_hash(analysis.image.content_hash)
        elif analysis is not None and mostly_text(analysis.perception):
            text = verbal.text  # a picture of a sentence is matched by what it says (E5-V's trick)
            analysis, verbal = None, None
        backbone = self.analyzer.backbone
        cross_modal = getattr(backbone, "cross_modal", False)
        decision = gate(text, has_image=analysis is not None, image_has_text=bool(verbal and verbal.text), text_reaches_visual=cross_modal)
        wanted = {"caption": text or self.analyzer.caption(verbal)}
        if decision.weights["text"] > 0:
            wanted["text"] = decision.text_for_ocr or (verbal.text if verbal else "")
        parts: dict[str, np.ndarray | None] = {name: self._query_embedding(query) for name, query in wanted.items()}
        if analysis is not None and text and hasattr(backbone, "embed_composed"):  # "this image, but ..."
            parts["visual"] = backbone.embed_composed(analysis, text)
        else:
            parts["visual"] = backbone.embed([analysis])[0] if analysis else None
        from_text = frozenset()
        if analysis is None and decision.weights["visual"] > 0:  # a text query into the image space
            parts["visual"], from_text = backbone.embed_texts([text])[0], frozenset({"visual"})
        query = self.store.query_layout.compose(self.store.project_parts(parts), decision.weights, from_text)
        hits = self._hits(query, max(k, rerank) + (reference is not None), modality, min_score, max_drop, text,
                          analysis.perception if analysis else None)
        if reference is not None:
            hits = [h.model_copy(update={"rank": rank}) for rank, h in enumerate((h for h in hits if h.item_id != reference), start=1)]
        deadline = started + time_budget if time_budget is not None else None
        if rerank and hits and (deadline is None or time.monotonic() < deadline):  # no time left: no model loaded
            records = {r.item_id: r for r in self.store.catalog.items([h.item_id for h in hits[:rerank]])}
            generator, loading = self._loaded_generator()
            hits = rerank_hits(hits, records, text, generator, rerank, deadline + loading if deadline is not None else None)
        return hits[:k]

    @_damage_said
    def similar(self, item_id: int, k: int = 10, modality: Modality | None = None) -> list[SearchHit]:
        """"More like this": items like a stored one, searched as an image query of it would be
        (its stored vectors, no image analysed again); the item itself is left out."""
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            raise MoairError(f"similar() takes an item id (a whole number), not {type(item_id).__name__} {item_id!r}")
        records = self.store.catalog.items([item_id])
        if not records:
            raise NotFound(f"{item_id} is not in the index")
        query = self.store.query_layout.item_query(self.store.item_vectors([item_id])[0])
        hits = [h for h in self._hits(query, min(k + 1, MAX_K), modality, None, None, None, records[0].perception) if h.item_id != item_id]
        return [h.model_copy(update={"rank": rank}) for rank, h in enumerate(hits[:k], start=1)]

    def _hits(
        self, query: np.ndarray, k: int, modality, min_score, max_drop, text: str | None, perception
    ) -> list[SearchHit]:
        """Search with one composed query row and describe the hits."""
        scores, ids = self.store.search(query[None], k, modality=modality)
        # cut on the scores as shown (4 decimals), so a shown score used as --min-score keeps its hit
        found = cut_by_score([(round(float(s), 4), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0], min_score, max_drop)
        item_ids = [i for _, i in found]
        contributions = self.store.query_layout.contributions(query, self.store.item_vectors(item_ids))
        records = {r.item_id: r for r in self.store.catalog.items(item_ids)}
        hits = []
        for rank, ((score, item_id), parts_score) in enumerate(zip(found, contributions), start=1):
            record = records[item_id]
            hits.append(
                SearchHit(
                    rank=rank,
                    item_id=item_id,
                    path=record.paths[0] if record.paths else "",
                    score=score,
                    contributions=parts_score,
                    evidence=evidence(record, text, perception),
                    other_paths=record.paths[1:],
                )
            )
        return hits

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
        return VerifyReport(path=str(store.path), problems=store.verify(), repaired=store.repaired_at_open, saved=store.writable)

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
            results.append(check("generator", name, plugin, lambda: self.generator().judge(CHECK_TEXT, [Candidate(0, CHECK_TEXT)])))
        else:
            results.append(not_checked("generator", name, plugin, GENERATOR_LOADS_LATER))
        return results

    def generator(self):
        """The generative model for rerank and answers: the index's MoAI backbone when it has one
        (the loaded model is shared), else the packaged Gemma-3 270M reading verbalizations."""
        if self._generator is None:
            backbone = self.analyzer.backbone
            if backbone.name == "moai":
                self._generator = GENERATORS.create("moai", backbone=backbone)
            else:
                self._generator = GENERATORS.create("gemma", device=self._device, dtype=self._dtype)
        return self._generator if self.generator_wrapper is None else self.generator_wrapper(self._generator)

    def _loaded_generator(self) -> tuple[object, float]:
        """The generator and the seconds loading it took now (next to none once it is loaded): a
        time budget counts generative work, not the first load (Gemma's converts it: 1-2 minutes)."""
        started = time.monotonic()
        generator = self.generator()
        return generator, time.monotonic() - started

    @_damage_said
    def ask_stream(
        self, question: str, k: int = 5, time_budget: float = DEFAULT_ASK_BUDGET, min_score: float = SUPPORT_FLOOR,
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
        _check_budget(time_budget)
        hits = self.search(question, k=k)
        records = {r.item_id: candidate(r) for r in self.store.catalog.items([h.item_id for h in hits])}
        generator, deadline = _NoGenerator(), started + time_budget
        if time.monotonic() < deadline and any(h.score >= min_score for h in hits):
            generator, loading = self._loaded_generator()
            deadline += loading
        yield from answer_events(question.strip(), hits, records, generator, started, deadline, min_score, max_new_tokens)

    def ask(self, question: str, k: int = 5, time_budget: float = DEFAULT_ASK_BUDGET, min_score: float = SUPPORT_FLOOR) -> Answer:
        """The whole answer of ``ask_stream``."""
        *_, answer = self.ask_stream(question, k=k, time_budget=time_budget, min_score=min_score)
        return answer

    def head_spaces(self) -> list[str]:
        """The embedding spaces a projection head can be trained for: the text embedder's
        ("language": caption and OCR blocks) and, with a cross-modal backbone, its shared space ("visual")."""
        return ["language"] + (["visual"] if getattr(self.analyzer.backbone, "cross_modal", False) else [])

    @_damage_said
    def train_head(
        self,
        triples: str | Path | Sequence[Triple],
        spaces: Sequence[str] | None = None,
        progress: HeadProgress | None = None,
        **training,
    ) -> dict[str, TrainingReport]:
        """Train a projection head per embedding space on text triples (a jsonl file or ``Triple``s;
        E5-V's recipe, see ``indexer.head``) and search through them from now on; the stored vectors
        are projected, nothing is embedded again. ``spaces`` defaults to all of ``head_spaces()``;
        ``training`` goes to ``indexer.head.train_head`` (steps, batch_size, lr, seed, ...)."""
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
                triples, embed_queries, embed_passages, encoder=encoder.name, encoder_version=encoder.version,
                progress=report_to(f"training the {space} head"), embed_progress=report_to(f"embedding texts ({space})"),
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
            raise MoairError(f"{what}(): {shown_path(str(path))!r} is not a file name (it holds a lone UTF-16 surrogate)") from None
    return listed


def _refuse_other_models(
    path: Path, config: IndexConfig, text_embedder: str, backbone: str, checkpoint, expert_checkpoints, experts: Sequence[str]
) -> None:
    """An existing index keeps the models it was built with: asking for others is a mistake to
    say out loud, not to ignore (its stored vectors would not match them)."""
    new_index = "a different one needs a new index (another --index path)"
    for what, asked, default, built in (
        ("text embedder", text_embedder, DEFAULT_TEXT_EMBEDDER, config.text_embedder),
        ("backbone", backbone, DEFAULT_BACKBONE, config.backbone),
    ):
        if asked != default and asked != built:
            raise MoairError(f"{path} was built with the {built} {what}; {new_index}")
    if checkpoint and str(Path(checkpoint).expanduser().absolute()) != config.backbone_options.get("checkpoint"):
        raise MoairError(f"{path} was built with the {config.backbone} backbone {config.backbone_options or ''}; {new_index}")
    for name, folder in (expert_checkpoints or {}).items():
        if config.expert_options.get(name, {}).get("checkpoint") != str(Path(folder).expanduser().absolute()):
            raise MoairError(f"{path} was built without the {name} expert from {folder}; {new_index}")
    built_experts = set(config.experts) - set(config.expert_options)
    if tuple(experts) != DEFAULT_EXPERTS and set(experts) != built_experts:  # the defaults mean "whatever it has"
        raise MoairError(f"{path} was built with the experts {', '.join(sorted(built_experts))}; {new_index}")


def _check_budget(seconds: float | None) -> None:
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_BUDGET):
        raise MoairError(f"time_budget must be a number of seconds above 0 and at most {MAX_BUDGET}, got {seconds!r}")


class _NoGenerator:
    """Stands in when no item supports an answer or no time is left: nothing is generated, no
    model is loaded."""

    version = "none"

    def stream(self, *args, **kwargs) -> Iterator[str]:
        return iter(())


def cut_by_score(
    found: list[tuple[float, int]], min_score: float | None, max_drop: float | None
) -> list[tuple[float, int]]:
    """(score, id) pairs, best first, kept while at or above ``min_score`` and until the first
    fall of more than ``max_drop`` from one hit to the next. Works on any index's ranking."""
    kept: list[tuple[float, int]] = []
    for score, item_id in found:
        if min_score is not None and score < min_score:
            break
        if max_drop is not None and kept and kept[-1][0] - score > max_drop:
            break
        kept.append((score, item_id))
    return kept
