"""The engine as the HTTP server shares it between requests.

Searches run side by side: each runs on one of a few search threads that, like indexing workers,
hold their own single-threaded copies of the models (so two searches on two cores do not queue on
one model's lock). A search that starts while no other is running uses the process-wide,
multi-threaded models instead: one client gets the latency of the Python API. Reading calls
(item detail, stats) run in the request's own thread. A reload,
after an upload job or a delete committed, waits for the calls in flight and holds new ones back
for the moment it takes; changes themselves (an upload job, a delete) take turns on ``changes``.
Generative work (a reranked search, an answer) runs on a generation thread of its own, so it
never holds a search thread for its time budget; a few more wait their turn, and beyond that
the request is refused as busy. The generative model is loaded on a thread of its own at the
first request that needs it (Gemma's first load converts it: a minute or two); a request waits
for it no longer than its time budget, then is refused as busy until the model is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import faiss

from indexer.errors import Busy
from indexer.packaged_models import INDEX_WORKERS, make_worker_thread, shared_models
from retriever import Engine

T = TypeVar("T")
GENERATION_QUEUE = 4  # generative requests running or waiting at once; more are refused as busy
LOADING_RETRY_AFTER = 30  # seconds a request refused while the generative model loads is told to wait


def _search_thread() -> None:
    make_worker_thread()
    # One query gains nothing from FAISS's OpenMP threads, which go on spinning after a search on
    # the cores the next query embedding needs (the setting is per calling thread).
    faiss.omp_set_num_threads(1)


class _GeneratingOutsideReads:
    """The engine's generator, its calls made outside the read that asked for them: rerank and
    answers read the index first (hits, records) and only then generate, which takes seconds to
    minutes and must not hold back a reload, and with it every search."""

    def __init__(self, generator, served: ServedEngine) -> None:
        self._generator, self._served = generator, served

    def __getattr__(self, name: str):
        return getattr(self._generator, name)

    def judge(self, *args, **kwargs):
        with self._served._not_reading():
            return self._generator.judge(*args, **kwargs)

    def stream(self, *args, **kwargs) -> Iterator[str]:
        pieces = self._generator.stream(*args, **kwargs)
        while True:
            with self._served._not_reading():
                piece = next(pieces, None)
            if piece is None:
                return
            yield piece


class ServedEngine:
    """One open engine shared by concurrent requests (see the module docstring)."""

    def __init__(self, engine: Engine, search_threads: int = INDEX_WORKERS) -> None:
        self.engine = engine
        self.changes = threading.Lock()  # one change at a time: an upload job or a delete
        self._state = threading.Condition()
        self._readers = 0
        self._searching = 0
        self._reloading = False
        self._search_pool = ThreadPoolExecutor(
            search_threads, thread_name_prefix="moair-search", initializer=_search_thread
        )
        self._generation_pool = ThreadPoolExecutor(1, thread_name_prefix="moair-generate", initializer=_search_thread)
        self._generating = 0  # requests on or waiting for the generation thread
        self._generator_pool = ThreadPoolExecutor(1, thread_name_prefix="moair-load-generator")
        self._generator_load: Future | None = None  # the generative model's load, once started
        engine.generator_wrapper = lambda generator: _GeneratingOutsideReads(generator, self)

    async def generator_ready(self, seconds: float) -> None:
        """Wait at most ``seconds`` for the generative model, starting its load on a thread of its
        own the first time; ``Busy`` when it is still loading then. A failed load is raised here,
        and the next request tries again."""
        with self._state:
            if self._generator_load is None:
                self._generator_load = self._generator_pool.submit(self.engine.generator)
            load = self._generator_load
        await asyncio.wait([asyncio.wrap_future(load)], timeout=seconds)
        if not load.done():
            raise Busy(
                "the generative model (rerank, answers) is loading; its first load takes a minute or two, "
                "try again then",
                retry_after=LOADING_RETRY_AFTER,
            )
        if load.exception() is not None:
            with self._state:
                if self._generator_load is load:
                    self._generator_load = None
            raise load.exception()

    def read(self, call: Callable[[Engine], T]) -> T:
        """``call(engine)`` in this thread, alongside other reads, never during a reload."""
        with self._state:
            while self._reloading:
                self._state.wait()
            self._readers += 1
        try:
            return call(self.engine)
        finally:
            with self._state:
                self._readers -= 1
                if not self._readers:
                    self._state.notify_all()

    async def search(self, call: Callable[[Engine], T], generative: bool = False) -> T:
        """``call(engine)`` on a search thread, or with ``generative`` on the generation thread
        (see the module docstring); ``Busy`` when too many generative requests wait already."""
        if not generative:
            return await asyncio.get_running_loop().run_in_executor(self._search_pool, self._search, call)
        self._take_generation_turn()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._generation_pool, self._search, call)
        finally:
            self._end_generation_turn()

    def stream(self, events: Callable[[Engine], Iterator[T]]) -> AsyncIterator[T]:
        """The items of ``events(engine)`` as the generation thread produces them (a streamed
        answer); ``Busy`` at once (not only when iterated) when too many generative requests wait."""
        with self._state:
            if self._generating >= GENERATION_QUEUE:
                raise self._busy()
        return self._streamed(events)

    async def _streamed(self, events: Callable[[Engine], Iterator[T]]) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        finished = object()

        def produce(engine: Engine) -> None:
            for event in events(engine):
                loop.call_soon_threadsafe(queue.put_nowait, event)

        def run() -> None:
            try:
                self._search(produce)
            except BaseException as error:  # handed to the request, which reports it
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, finished)

        self._take_generation_turn()  # here, not before: a stream never iterated must not keep a turn
        try:
            producer = loop.run_in_executor(self._generation_pool, run)
            while (item := await queue.get()) is not finished:
                if isinstance(item, BaseException):
                    raise item
                yield item
            await producer
        finally:
            self._end_generation_turn()

    def _take_generation_turn(self) -> None:
        with self._state:
            if self._generating >= GENERATION_QUEUE:
                raise self._busy()
            self._generating += 1

    def _busy(self) -> Busy:
        return Busy(f"{self._generating} generative requests (rerank, answers) are running or waiting; try again later")

    def _end_generation_turn(self) -> None:
        with self._state:
            self._generating -= 1

    def _search(self, call: Callable[[Engine], T]) -> T:
        with self._state:
            alone = not self._searching
            self._searching += 1
        try:
            with shared_models() if alone else contextlib.nullcontext():
                return self.read(call)
        finally:
            with self._state:
                self._searching -= 1

    @contextlib.contextmanager
    def _not_reading(self) -> Iterator[None]:
        """Inside a read: this thread stops counting as a reader (a reload may run) until the block
        ends, then waits out any reload before it reads again."""
        with self._state:
            self._readers -= 1
            if not self._readers:
                self._state.notify_all()
        try:
            yield
        finally:
            with self._state:
                while self._reloading:
                    self._state.wait()
                self._readers += 1

    def reload(self) -> None:
        """Switch to what was committed since: waits for the reads in flight, holds new ones back."""
        with self._state:
            while self._reloading:
                self._state.wait()
            self._reloading = True
            while self._readers:
                self._state.wait()
        try:
            self.engine.reload()
        finally:
            with self._state:
                self._reloading = False
                self._state.notify_all()

    def close(self) -> None:
        self._search_pool.shutdown(wait=True)
        self._generation_pool.shutdown(wait=True)
        self._generator_pool.shutdown(wait=True)
        self.engine.close()
