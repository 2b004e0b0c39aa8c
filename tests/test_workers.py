"""Indexing workers: each thread has its own models, and what they store matches a plain analysis."""

import os
from concurrent.futures import ThreadPoolExecutor

from indexer.images import load_image
from indexer.packaged_models import INDEX_WORKERS, efficientnet_lite, make_worker_thread, model_threads


def test_worker_threads_load_their_own_single_threaded_models_once():
    shared = efficientnet_lite()
    assert efficientnet_lite() is shared  # ordinary threads share one instance

    def own_model():
        first, second = efficientnet_lite(), efficientnet_lite()
        return id(first), first is second, model_threads()

    with ThreadPoolExecutor(2, initializer=make_worker_thread) as pool:
        results = [f.result() for f in [pool.submit(own_model) for _ in range(6)]]
    assert all(once for _, once, _ in results)
    assert id(shared) not in {model for model, _, _ in results}
    assert len({model for model, _, _ in results}) <= 2  # one per worker thread, however many calls
    # Workers together use no more threads than there are cores (1 each on a 2-core machine).
    assert all(threads * INDEX_WORKERS <= max(os.cpu_count() or 1, INDEX_WORKERS) for _, _, threads in results)


def test_indexed_perception_matches_an_analysis_in_the_calling_thread(engine, photo):
    """The sample index was built by the workers; the calling thread's shared models must see the same."""
    for name in ("dog", "kite", "page"):
        stored = engine.inspect(str(photo(name))).perception
        fresh = engine.analyzer.analyze(load_image(photo(name))).perception
        assert [d.label for d in stored.detections] == [d.label for d in fresh.detections], name
        assert [t.label for t in stored.tags] == [t.label for t in fresh.tags], name
        assert [t.text for t in stored.text] == [t.text for t in fresh.text], name
