"""Vector index at scale: the index moair chooses itself (``indexer.ann``) next to its peers, on synthetic
embeddings.

Run: .venv/bin/python benchmarks/bench_ann.py [--n 100000,1000000] [--dims 384,768] [--queries 1000] [--k 10] [--seed 0]
Writes benchmarks/results/ann.{json,md} (``--out`` names another stem: a bare name goes to benchmarks/results/, a path
is used as given) and prints the markdown. The defaults (both sizes, both dimensions) take about half an hour on
2 cores.

One section per (n, dim). Methods, all measured in the same run on the same vectors:

- FAISS IndexFlatIP: exact search, the baseline. Every QPS and memory ratio is against it, and its top-k is the truth
  every recall is measured against.
- numpy brute force as rclip does it (matrix @ query, argpartition).
- **moair auto**: the index type ``ann.choose_index_type(n, dim)`` picks (exact ``Flat`` while exact search is cheap,
  else IVF with an HNSW coarse quantizer and the most accurate codes within a quarter of Flat's memory), as moair's
  own ``indexer.store.vectors.VectorIndex`` over a moair catalog on disk holding the vectors: built by its ``build``
  (trained on a random sample of ``ann.training_size`` vectors, filled from SQLite into shards), and tuned as moair
  tunes it: ``ann.tune`` picks the smallest knob value (nprobe) reaching recall@10 >= 0.95 on 200 *tuning* queries
  (drawn from the same distribution, disjoint from the evaluation queries). It is then measured on the evaluation
  queries at that value through ``VectorIndex.search``, the code a moair search runs: lossy codes (SQ, PQ) find
  ``ann.REFINE_FACTOR`` * k candidates that are re-ranked with the exact vectors read from the catalog; the exact
  vectors are not counted as index memory, because moair keeps them on disk for every index type anyway.
- moair IVF-HNSW SQ8 at the same number of lists, built, tuned and re-ranked the same way: the codes one step more
  accurate than moair's default budget allows, to show what the budget costs (left out when moair chose Flat or SQ8).
- hnswlib (M=16, ef_construction=200), ef swept, reported at the smallest ef reaching the target.

Every method uses all cores, as a user's process would (FAISS/OpenMP, OpenBLAS and hnswlib's threads). Recall@k is
the standard ANN recall: |approximate top-k ∩ exact top-k| / k, averaged over the queries. Absolute figures are for
this machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import faiss
import hnswlib
import numpy as np

from indexer import ann
from indexer.mixture import Block, Layout
from indexer.records import Perception, Verbalization
from indexer.shards import Shards, VectorManifest
from indexer.store.catalog import Batch, Catalog, FileEntry, NewItem
from indexer.store.config import IndexConfig, PluginSpec
from indexer.store.vectors import TUNING_QUERIES, VectorIndex

RESULTS = Path(__file__).parent / "results"
TARGET_RECALL = 0.95
GOAL_SPEEDUP = 20.0
GOAL_MEMORY = 0.25
GOAL_N = 1_000_000
GOAL_DIM = 384
GOAL = "at 1M x 384 on 2 cores: recall@10 >= 0.95 at >= 20x the QPS of exact search, memory <= 25 % of Flat"
EFS = [16, 32, 64, 128, 256, 512]
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_ADD_CHUNK = 200_000  # hnswlib vectors added per call, so that a long build prints progress
BRUTE_SINGLE_QUERIES = 200  # single-query loops of the brute-force methods time at most the first 200 queries
SINGLE_MIN_QUERIES = 100  # ... and any single-query loop stops after SINGLE_BUDGET_S once this many are timed
SINGLE_BUDGET_S = 20.0
SWEEP_BEYOND_TUNED = 4  # the knob sweep of a tuned index goes up to 4x the tuned value (or until slower than exact)
N_CENTRES = 1000
SPECTRUM_DECAY = 1.2  # variance of the j-th direction ~ j ** -1.2
NOISE_RATIO = 1.0  # expected norm of a point's offset from its centre, relative to the centre's norm
ISOTROPIC_SHARE = 0.1  # share of the offset's variance spread evenly over all dimensions
GENERATE_CHUNK = 65_536
SCORES_BUDGET_BYTES = 256 * 2**20  # numpy batched search: at most this much of query x database scores at once


@dataclass
class MethodResult:
    """One index at its reported setting, plus its knob sweep when it has one."""

    method: str
    setting: str
    build_s: float
    memory_bytes: int
    recall: float
    qps_single: float
    single_queries_timed: int
    qps_batched: float
    target_reached: bool = True  # recall on the evaluation queries >= TARGET_RECALL
    sweep: list[dict[str, Any]] = field(default_factory=list)
    tuning: dict[str, Any] | None = None  # moair-tuned rows: index type, knob, value, recall on the tuning queries


def log(message: str, started: float) -> None:
    """Progress line with the seconds elapsed since ``started``."""
    print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)


def synthetic_embeddings(n: int, queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` database and ``queries`` held-out query vectors (float32, unit rows) and every row's cluster.

    Centres and offsets share a decaying spectrum (variance of the j-th direction ~ j ** -SPECTRUM_DECAY,
    in a random rotation), so clusters overlap and the data has a low intrinsic dimension, as real embeddings
    do; a small isotropic share keeps it full rank. Rows are generated in chunks to bound temporary memory.
    """
    rng = np.random.default_rng([seed, dim])
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    spectrum = np.arange(1, dim + 1, dtype=np.float32) ** (-SPECTRUM_DECAY / 2)
    spectrum /= np.linalg.norm(spectrum)
    centres = (rng.standard_normal((N_CENTRES, dim), dtype=np.float32) * spectrum) @ rotation
    offset_transform = (NOISE_RATIO * math.sqrt(1 - ISOTROPIC_SHARE) * spectrum)[:, None] * rotation
    isotropic_scale = NOISE_RATIO * math.sqrt(ISOTROPIC_SHARE / dim)
    total = n + queries
    vectors = np.empty((total, dim), dtype=np.float32)
    clusters = rng.integers(0, N_CENTRES, total)
    for start in range(0, total, GENERATE_CHUNK):
        rows = slice(start, min(start + GENERATE_CHUNK, total))
        count = rows.stop - rows.start
        chunk = centres[clusters[rows]]
        chunk += rng.standard_normal((count, dim), dtype=np.float32) @ offset_transform
        chunk += isotropic_scale * rng.standard_normal((count, dim), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        vectors[rows] = chunk
    return vectors[:n], vectors[n:], clusters


def offset_participation_ratio(dim: int) -> float:
    """Participation ratio (sum of variances)^2 / sum of squared variances of a point's offset from its centre:
    the number of directions the spread within a cluster effectively has."""
    variances = np.arange(1, dim + 1, dtype=np.float64) ** -SPECTRUM_DECAY
    variances = (1 - ISOTROPIC_SHARE) * variances / variances.sum() + ISOTROPIC_SHARE / dim
    return float(variances.sum() ** 2 / (variances**2).sum())


def hnswlib_index_bytes(index: hnswlib.Index) -> int:
    """Size of the file hnswlib's save_index writes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "index.bin")
        index.save_index(str(path))
        return path.stat().st_size


def best_run(call: Callable[[], Any], min_total_s: float = 1.0, min_runs: int = 2) -> tuple[float, Any]:
    """Seconds of the fastest of repeated runs of ``call`` (at least ``min_runs``, and until ``min_total_s`` has
    passed), and what the first run returned."""
    times: list[float] = []
    first = None
    while len(times) < min_runs or sum(times) < min_total_s:
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
        if first is None:
            first = result
    return min(times), first


def single_query_qps(search_one: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[float, int]:
    """Queries per second when ``queries`` are searched one call each, after 5 warm-up calls, and how many were
    timed: all of them, unless the loop passes SINGLE_BUDGET_S with at least SINGLE_MIN_QUERIES timed."""
    for query in queries[:5]:
        search_one(query)
    started = time.perf_counter()
    timed = 0
    for query in queries:
        search_one(query)
        timed += 1
        if timed >= SINGLE_MIN_QUERIES and time.perf_counter() - started >= SINGLE_BUDGET_S:
            break
    return timed / (time.perf_counter() - started), timed


def numpy_top_k_single(database: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Top-k rows by inner product for one query, as rclip does it: matrix @ vector, then argpartition."""
    scores = database @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def numpy_top_k_batched(database: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Top-k rows by inner product for every query: queries @ database.T in chunks, argpartition per row."""
    chunk = max(1, SCORES_BUDGET_BYTES // (4 * len(database)))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ database.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def bench_flat(
    database: np.ndarray, queries: np.ndarray, tuning_queries: np.ndarray, k: int
) -> tuple[MethodResult, np.ndarray, np.ndarray, np.ndarray]:
    """FAISS IndexFlatIP: the baseline, the exact top-k (ids and scores) of the evaluation queries every recall is
    measured against, and the exact top-k ids of the tuning queries."""
    started = time.perf_counter()
    index = faiss.IndexFlatIP(database.shape[1])
    index.add(database)
    build_s = time.perf_counter() - started
    batched_s, (truth_scores, truth) = best_run(lambda: index.search(queries, k))
    tuning_truth = index.search(tuning_queries, k)[1]
    qps_single, timed = single_query_qps(lambda q: index.search(q[None, :], k), queries[:BRUTE_SINGLE_QUERIES])
    result = MethodResult(
        method="FAISS Flat (exact, baseline)",
        setting="IndexFlatIP",
        build_s=build_s,
        memory_bytes=ann.serialized_bytes(index),
        recall=ann.recall_at_k(truth, truth),
        qps_single=qps_single,
        single_queries_timed=timed,
        qps_batched=len(queries) / batched_s,
    )
    return result, truth, truth_scores, tuning_truth


def bench_numpy(database: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int) -> MethodResult:
    """numpy brute force over the float32 matrix (the matrix is the index: no build step)."""
    batched_s, found = best_run(lambda: numpy_top_k_batched(database, queries, k))
    qps_single, timed = single_query_qps(lambda q: numpy_top_k_single(database, q, k), queries[:BRUTE_SINGLE_QUERIES])
    return MethodResult(
        method="numpy brute force (rclip-style)",
        setting="matrix @ query + argpartition",
        build_s=0.0,
        memory_bytes=database.nbytes,
        recall=ann.recall_at_k(found, truth),
        qps_single=qps_single,
        single_queries_timed=timed,
        qps_batched=len(queries) / batched_s,
    )


def synthetic_catalog(database: np.ndarray, folder: Path) -> Catalog:
    """A moair catalog on disk holding ``database`` as items with vector ids 1..n: the exact vectors that
    ``VectorIndex`` builds from and re-ranks lossy codes with, read from SQLite as moair reads them."""
    dim = database.shape[1]
    layout = Layout(blocks=[Block(name="caption", dim=dim - 1, unrelated_similarity=0.0)])
    Catalog.create(
        folder,
        IndexConfig(
            text_embedder=PluginSpec(name="synthetic"),
            backbone=PluginSpec(name="synthetic"),
            experts=[],
            layout=layout,
            created_at=0.0,
        ),
    )
    catalog, _ = Catalog.open(folder, writable=True)
    perception, verbalization = Perception(width=1, height=1), Verbalization(moai="", retrieval="")
    for start in range(0, len(database), GENERATE_CHUNK):
        names = [str(i) for i in range(start, min(start + GENERATE_CHUNK, len(database)))]
        rows = database[start : start + len(names)]
        catalog.commit(
            Batch(
                new_items=[NewItem(name, perception, verbalization, row, {}) for name, row in zip(names, rows)],
                files=[FileEntry(name, 0, 0, name) for name in names],
            )
        )
    return catalog


def bench_moair_index(
    method: str,
    spec: str,
    catalog: Catalog,
    folder: Path,
    database: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    tuning_queries: np.ndarray,
    tuning_truth: np.ndarray,
    k: int,
    exact_qps_batched: float,
    started: float,
) -> MethodResult:
    """moair's ``VectorIndex`` of type ``spec`` over ``catalog``, built (trained on a sample, filled from SQLite),
    tuned on the tuning queries with ``ann.tune`` and measured on the evaluation queries at the tuned knob value,
    with a sweep of the knob around it. Its searches are moair's own: lossy codes find ``REFINE_FACTOR`` * k
    candidates that the exact vectors from the catalog re-rank."""
    n, dim = database.shape
    build_started = time.perf_counter()
    index = VectorIndex(
        Shards(folder, dim, VectorManifest(requested=spec)), catalog.vector_chunks, catalog.live_vector_ids
    )
    index.build()
    build_s = time.perf_counter() - build_started
    training = ann.training_size(ann.build_index(spec, dim), n, dim)
    tunable = index.shards.shards[0].index
    next_step = f"tuning on {len(tuning_queries)} queries" if ann.knob(tunable) else "exact: nothing to tune"
    log(f"  {spec}: trained on {training:,} vectors and built in {build_s:.1f} s; {next_step}", started)

    factor = ann.refine_factor(spec)

    def search(x: np.ndarray, kk: int, value: int | None) -> np.ndarray:
        return index.search(x, kk, knob_value=value)[1] - 1  # vector ids 1..n are database rows 0..n-1

    tuning = ann.tune(tunable, search, tuning_queries, tuning_truth, target=TARGET_RECALL)
    knob = ann.knob(tunable)
    sweep: list[dict[str, Any]] = []
    if knob is not None:
        log(f"  {spec}: tuned {tuning.knob}={tuning.value} (recall {tuning.recall:.3f}); sweeping {knob.name}", started)
        values = list(knob.values)
        position = 0
        while position < len(values):
            value = values[position]
            seconds, found = best_run(lambda: search(queries, k, value), min_total_s=0.5)
            qps = len(queries) / seconds
            sweep.append(
                {"knob": knob.name, "value": value, "recall": ann.recall_at_k(found, truth), "qps_batched": qps}
            )
            if value >= tuning.value and (value >= SWEEP_BEYOND_TUNED * tuning.value or qps < exact_qps_batched):
                break
            # tuning found no value reaching the target and this one is already far slower than exact: skip to the
            # value it settled on (the largest), rather than time every full scan in between
            jump = value < tuning.value and qps < exact_qps_batched / SWEEP_BEYOND_TUNED
            position = values.index(tuning.value) if jump else position + 1
        reported = next(row for row in sweep if row["value"] == tuning.value)
        recall, qps_batched = reported["recall"], reported["qps_batched"]
        setting = f"{spec}, {tuning.knob}={tuning.value}" + (
            f", top {factor * k} re-ranked from disk" if factor > 1 else ""
        )
    else:
        seconds, found = best_run(lambda: search(queries, k, None))
        recall, qps_batched = ann.recall_at_k(found, truth), len(queries) / seconds
        setting = f"{spec} (exact)"
    single_queries = queries if knob is not None else queries[:BRUTE_SINGLE_QUERIES]
    qps_single, timed = single_query_qps(lambda q: search(q[None, :], k, tuning.value), single_queries)
    result = MethodResult(
        method=method,
        setting=setting,
        build_s=build_s,
        memory_bytes=index.shards.index_bytes(),
        recall=recall,
        qps_single=qps_single,
        single_queries_timed=timed,
        qps_batched=qps_batched,
        target_reached=recall >= TARGET_RECALL,
        sweep=sweep,
        tuning={
            "index_type": spec,
            "training_vectors": training,
            "knob": tuning.knob,
            "value": tuning.value,
            "tuning_queries": tuning.queries,
            "tuning_recall": tuning.recall,
            "tuning_reached": tuning.reached,
            "reranked_candidates": factor * k if factor > 1 else 0,
        },
    )
    return result


def bench_hnswlib(
    database: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int, seed: int, started: float
) -> MethodResult:
    """hnswlib HNSW graph over the float vectors (space "ip"); ef swept, reported at the smallest that reaches the
    target."""
    n, dim = database.shape
    build_started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=seed)
    for start in range(0, n, HNSW_ADD_CHUNK):
        stop = min(start + HNSW_ADD_CHUNK, n)
        index.add_items(database[start:stop], np.arange(start, stop), num_threads=-1)
        if stop < n:
            log(f"  hnswlib: {stop:,} / {n:,} added ({time.perf_counter() - build_started:.0f} s)", started)
    build_s = time.perf_counter() - build_started
    log(f"  hnswlib: built in {build_s:.1f} s; sweeping ef", started)
    sweep = []
    for ef in EFS:
        index.set_ef(ef)
        seconds, (found, _) = best_run(lambda: index.knn_query(queries, k, num_threads=-1), min_total_s=0.5)
        recall = ann.recall_at_k(found.astype(np.int64), truth)
        sweep.append({"knob": "ef", "value": ef, "recall": recall, "qps_batched": len(queries) / seconds})
    reaching = [row for row in sweep if row["recall"] >= TARGET_RECALL]
    chosen = reaching[0] if reaching else max(sweep, key=lambda row: row["recall"])
    index.set_ef(int(chosen["value"]))
    qps_single, timed = single_query_qps(lambda q: index.knn_query(q, k, num_threads=1), queries)
    result = MethodResult(
        method="hnswlib HNSW",
        setting=f"M={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION}, ef={chosen['value']}",
        build_s=build_s,
        memory_bytes=hnswlib_index_bytes(index),
        recall=chosen["recall"],
        qps_single=qps_single,
        single_queries_timed=timed,
        qps_batched=chosen["qps_batched"],
        target_reached=bool(reaching),
        sweep=sweep,
    )
    return result


def data_summary(
    database: np.ndarray,
    queries: np.ndarray,
    query_clusters: np.ndarray,
    clusters: np.ndarray,
    truth: np.ndarray,
    truth_scores: np.ndarray,
) -> dict[str, float]:
    """How meaningful the neighbours are: cosine of the 1st and k-th true neighbour against random pairs."""
    return {
        "cosine_1st_neighbour": float(truth_scores[:, 0].mean()),
        "cosine_kth_neighbour": float(truth_scores[:, -1].mean()),
        "cosine_random_pair": float((queries @ database[:1000].T).mean()),
        "neighbours_in_query_cluster": float((clusters[truth] == query_clusters[:, None]).mean()),
        "offset_participation_ratio": offset_participation_ratio(database.shape[1]),
    }


def ratios(result: MethodResult, baseline: MethodResult) -> dict[str, float]:
    """QPS and memory of ``result`` relative to the exact FAISS baseline."""
    return {
        "qps_single_vs_exact": result.qps_single / baseline.qps_single,
        "qps_batched_vs_exact": result.qps_batched / baseline.qps_batched,
        "memory_vs_flat": result.memory_bytes / baseline.memory_bytes,
    }


def goal_check(result: MethodResult, relative: dict[str, float]) -> dict[str, bool]:
    """Each criterion of the goal line, and the verdict for single-query and batched search."""
    recall_ok = result.recall >= TARGET_RECALL
    memory_ok = relative["memory_vs_flat"] <= GOAL_MEMORY
    single_ok = relative["qps_single_vs_exact"] >= GOAL_SPEEDUP
    batched_ok = relative["qps_batched_vs_exact"] >= GOAL_SPEEDUP
    return {
        "recall_ok": recall_ok,
        "memory_ok": memory_ok,
        "speedup_single_ok": single_ok,
        "speedup_batched_ok": batched_ok,
        "meets_single": recall_ok and memory_ok and single_ok,
        "meets_batched": recall_ok and memory_ok and batched_ok,
    }


def ivf_quantizer(spec: str) -> str | None:
    """The coarse quantizer part of an IVF index_factory string ("IVF4096_HNSW32", "IVF512"), or None."""
    match = re.search(r"(?:^|,)(IVF\d+(?:_HNSW\d+)?)(?:,|$)", spec)
    return match.group(1) if match else None


def bench_section(n: int, dim: int, nq: int, k: int, seed: int, started: float) -> dict:
    """Every method at one (n, dim), with ratios against FAISS Flat and the goal check."""
    section_started = time.perf_counter()
    log(f"n {n:,} dim {dim}: generating {n:,} + {nq} + {TUNING_QUERIES} vectors", started)
    database, all_queries, clusters = synthetic_embeddings(n, nq + TUNING_QUERIES, dim, seed)
    queries, tuning_queries = all_queries[:nq], all_queries[nq:]
    log(f"n {n:,} dim {dim}: FAISS Flat (baseline, ground truth)", started)
    baseline, truth, truth_scores, tuning_truth = bench_flat(database, queries, tuning_queries, k)
    results = [baseline]
    log(f"n {n:,} dim {dim}: numpy brute force", started)
    results.append(bench_numpy(database, queries, truth, k))
    spec = ann.choose_index_type(n, dim)
    log(f"n {n:,} dim {dim}: moair auto: {spec}", started)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"n {n:,} dim {dim}: the vectors into a moair catalog (SQLite) to build from and re-rank with", started)
        catalog = synthetic_catalog(database, Path(tmp))
        moair_args = (database, queries, truth, tuning_queries, tuning_truth, k, baseline.qps_batched, started)
        results.append(bench_moair_index(f"moair auto ({spec})", spec, catalog, Path(tmp) / "auto", *moair_args))
        quantizer = ivf_quantizer(spec)
        if quantizer is not None and not spec.endswith(",SQ8"):
            sq8 = f"{quantizer},SQ8"
            log(f"n {n:,} dim {dim}: {sq8} (same lists, SQ8 codes, re-ranked the same way)", started)
            results.append(
                bench_moair_index(f"moair IVF-HNSW SQ8 ({sq8})", sq8, catalog, Path(tmp) / "sq8", *moair_args)
            )
        catalog.close()
    log(f"n {n:,} dim {dim}: hnswlib", started)
    results.append(bench_hnswlib(database, queries, truth, k, seed, started))
    methods = []
    for result in results:
        relative = ratios(result, baseline)
        methods.append({**asdict(result), **relative, "goal": goal_check(result, relative)})
    entry = {
        "n": n,
        "dim": dim,
        "auto_index_type": spec,
        "flat_bytes": ann.flat_bytes(n, dim),
        "data": data_summary(database, queries, clusters[n : n + nq], clusters, truth, truth_scores),
        "methods": methods,
        "section_s": time.perf_counter() - section_started,
    }
    log(f"n {n:,} dim {dim}: done in {entry['section_s']:.0f} s", started)
    return entry


def environment() -> dict:
    """Machine and library versions the figures were measured with."""
    return {
        "cpu_count": os.cpu_count(),
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "faiss": faiss.__version__,
        "hnswlib": version("hnswlib"),
        "numpy": np.__version__,
        "load_average_at_start": os.getloadavg()[0],
    }


def yes_no(value: bool) -> str:
    """Markdown mark for a goal criterion."""
    return "yes" if value else "no"


def qps_cell(m: dict, nq: int) -> str:
    """Single-query QPS, with how many queries were timed when not all of them."""
    timed = m["single_queries_timed"]
    return f"{m['qps_single']:,.0f}" + ("" if timed >= nq else f" ({timed} q)")


def auto_note(entry: dict) -> str:
    """What moair chose at this size, and why."""
    spec, flat_mib = entry["auto_index_type"], entry["flat_bytes"] / 2**20
    if spec == ann.EXACT:
        return (
            f"moair chooses **exact search (Flat)** here: the vectors take {flat_mib:,.0f} MiB, within the "
            f"{ann.EXACT_SCAN_BYTES / 2**20:.0f} MiB one query may scan, so its auto row is exact (an IndexIDMap2 over "
            "a flat index: recall 1 by construction, nothing to tune)."
        )
    auto = next(m for m in entry["methods"] if m["tuning"] and m["tuning"]["index_type"] == spec)
    t = auto["tuning"]
    tuned = (
        f"tuned to {t['knob']}={t['value']}, the smallest value reaching recall@10 >= {TARGET_RECALL} on the "
        f"{t['tuning_queries']} tuning queries ({t['tuning_recall']:.3f} there)"
        if t["tuning_reached"]
        else f"no {t['knob']} reached {TARGET_RECALL} on the tuning queries: left at {t['knob']}={t['value']} "
        f"(recall {t['tuning_recall']:.3f} there)"
    )
    return (
        f"moair chooses **{spec}** here (the vectors take {flat_mib:,.0f} MiB, more than the "
        f"{ann.EXACT_SCAN_BYTES / 2**20:.0f} MiB one query may scan; the codes are the most accurate within "
        f"{ann.DEFAULT_MEMORY_FRACTION:.0%} of Flat's memory), trained on {t['training_vectors']:,} vectors and "
        f"{tuned}; the row reports the {auto['recall']:.3f} recall it gets on the evaluation queries at that value."
    )


def markdown(report: dict) -> str:
    """The report as markdown: a summary, then per (n, dim) a results table, the knob sweeps and the goal check."""
    nq, k, env = report["queries"], report["k"], report["environment"]
    sizes = ", ".join(f"{n:,}" for n in report["n"])
    dims = ", ".join(str(d) for d in report["dims"])
    at_goal = any(e["n"] >= GOAL_N and e["dim"] == GOAL_DIM for e in report["results"])
    lines = [
        f"# Vector index at scale: moair's auto index next to its peers (n = {sizes}; dim {dims})",
        "",
        f"{env['cpu_count']} cores, all used by every method (FAISS {env['faiss']}, hnswlib {env['hnswlib']}, "
        f"numpy {env['numpy']}); load average {env['load_average_at_start']:.1f} when the run started. "
        f"Run took {report['run_s'] / 60:.1f} min. Every ratio is against FAISS IndexFlatIP measured in the same "
        "section of the same run.",
        "",
        f"Goal (from the issue): **{GOAL}**. "
        + (
            "Sections at other sizes are indicative only."
            if at_goal
            else f"No section here is at 1M x {GOAL_DIM}: the goal check is indicative only (exact search costs "
            "O(n), so the speed ratios grow with n; IVF may need a larger nprobe)."
        ),
        "",
        "**Data.** Synthetic, not real embeddings: unit vectors from a Gaussian mixture of "
        f"{N_CENTRES:,} clusters whose centres and within-cluster offsets share a decaying spectrum (variance of the "
        f"j-th direction ~ j^-{SPECTRUM_DECAY}, randomly rotated; {ISOTROPIC_SHARE:.0%} of the offset variance spread "
        "evenly over all dimensions), so clusters overlap and the spread has few effective directions (participation "
        "ratio below), as embeddings are often said to have. Queries are held-out draws from the same mixture: "
        f"{nq} evaluation queries and {TUNING_QUERIES} separate tuning queries. How hard real embeddings (CLIP, "
        "E5, ...) are for ANN depends on their intrinsic dimension, hubness and query distribution, none of which "
        "this data was fitted to: the recall at a given nprobe / ef on real data can be higher or lower. **Compare "
        "the ratios between methods, not the absolute numbers**, and take the recall-versus-knob curves as "
        "qualitative.",
        "",
        f"**Methods.** *moair auto* is the index `indexer.ann.choose_index_type(n, dim)` picks at that size, as "
        "moair's own `VectorIndex` (`indexer/store/vectors.py`) over a moair catalog on disk holding the vectors: "
        "built by `VectorIndex.build` (trained on a random sample of `ann.training_size` vectors, filled from SQLite "
        "into shard files of about 1 GiB, searched through faiss.IndexShards) and tuned as moair tunes it: "
        f"`ann.tune` takes the smallest knob value reaching recall@{k} >= {TARGET_RECALL} on the {TUNING_QUERIES} "
        "tuning queries (moair makes its tuning queries from stored items; here they are fresh draws); the row is "
        "then measured on the evaluation queries at that value through `VectorIndex.search`, the code a moair "
        "search runs, so its recall there can land a little either side of the target. Build time is reading the "
        f"vectors from SQLite + training + adding. Lossy codes find {ann.REFINE_FACTOR}k candidates, re-ranked with "
        "the exact vectors the catalog holds (warm in the page cache after the first queries); their memory is that "
        "of the codes, the exact vectors stay on disk (moair keeps them there for every index type). *moair "
        "IVF-HNSW SQ8* uses the same lists with 8-bit codes, built, tuned and re-ranked the same way: what the next "
        "more accurate codes would cost in memory and buy in speed (shown when moair chose IVF with other codes). "
        "*hnswlib* (M = 16, ef_construction = 200) is reported at the smallest swept ef reaching "
        f"{TARGET_RECALL} on the evaluation queries themselves, an oracle choice that slightly favours it.",
        "",
        f"Recall@{k} = |approximate top-{k} ∩ exact top-{k}| / {k}, averaged over the {nq} evaluation queries (✗: "
        f"below {TARGET_RECALL}). QPS single: one call per query after 5 warm-up calls, over all {nq} queries, "
        f"except: the exact rows (FAISS Flat, numpy, moair auto when it is Flat) time at most the first "
        f"{BRUTE_SINGLE_QUERIES}, and any loop stops once it has run {SINGLE_BUDGET_S:.0f} s with at least "
        f'{SINGLE_MIN_QUERIES} timed; the cell says how many when not all ("(100 q)"). FAISS IVF and hnswlib '
        f"search a single query on one thread (they parallelise over queries). QPS batched: all {nq} queries in "
        "one call, best of repeated runs. Memory: serialized index size (FAISS, ids included), save_index file "
        "size (hnswlib), array bytes (numpy).",
        "",
        "## Summary",
        "",
        "| n | dim | moair auto | setting | recall@10 | single vs exact | batched vs exact | memory vs Flat "
        "| hnswlib recall@10 | hnswlib single vs exact | hnswlib batched vs exact | hnswlib memory vs Flat |",
        "|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for entry in report["results"]:
        auto = next(m for m in entry["methods"] if m["method"].startswith("moair auto"))
        peer = next(m for m in entry["methods"] if m["method"] == "hnswlib HNSW")
        knob = f"{auto['tuning']['knob']}={auto['tuning']['value']}" if auto["tuning"]["knob"] else "exact"
        lines.append(
            f"| {entry['n']:,} | {entry['dim']} | {entry['auto_index_type']} | {knob} | {auto['recall']:.3f} "
            f"| {auto['qps_single_vs_exact']:.1f}x | {auto['qps_batched_vs_exact']:.1f}x | "
            f"{auto['memory_vs_flat']:.1%} "
            f"| {peer['recall']:.3f} | {peer['qps_single_vs_exact']:.1f}x | {peer['qps_batched_vs_exact']:.1f}x "
            f"| {peer['memory_vs_flat']:.1%} |"
        )
    for entry in report["results"]:
        n, dim, data = entry["n"], entry["dim"], entry["data"]
        lines += [
            "",
            f"## n = {n:,}, dim {dim}",
            "",
            auto_note(entry),
            "",
            f"Data: mean cosine to the 1st / {k}th true neighbour {data['cosine_1st_neighbour']:.3f} / "
            f"{data['cosine_kth_neighbour']:.3f}, random pair {data['cosine_random_pair']:.3f}; "
            f"{data['neighbours_in_query_cluster']:.0%} of true neighbours share the query's cluster; participation "
            f"ratio of the within-cluster spread {data['offset_participation_ratio']:.1f} directions. Section took "
            f"{entry['section_s'] / 60:.1f} min.",
            "",
            "| method | setting | build s | memory MiB | memory vs Flat | recall@10 | QPS single | vs exact "
            "| QPS batched | vs exact |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for m in entry["methods"]:
            mark = "" if m["target_reached"] else " ✗"
            lines.append(
                f"| {m['method']} | {m['setting']} | {m['build_s']:.1f} | {m['memory_bytes'] / 2**20:,.1f} "
                f"| {m['memory_vs_flat']:.1%} | {m['recall']:.3f}{mark} | {qps_cell(m, nq)} "
                f"| {m['qps_single_vs_exact']:.1f}x | {m['qps_batched']:,.0f} | {m['qps_batched_vs_exact']:.1f}x |"
            )
        baseline_batched = entry["methods"][0]["qps_batched"]
        swept = [m for m in entry["methods"] if m["sweep"]]
        if swept:
            lines += [
                "",
                f"Knob sweeps (batched search of the {nq} evaluation queries; ← the reported setting; tuned indexes "
                f"are swept up to {SWEEP_BEYOND_TUNED}x the tuned value or until slower than exact):",
                "",
                "| method | knob | recall@10 | QPS batched | vs exact |",
                "|---|--:|--:|--:|--:|",
            ]
            for m in swept:
                reported = m["tuning"]["value"] if m["tuning"] else int(m["setting"].rsplit("=", 1)[1])
                for row in m["sweep"]:
                    arrow = " ←" if row["value"] == reported else ""
                    lines.append(
                        f"| {m['method']} | {row['knob']}={row['value']}{arrow} | {row['recall']:.3f} "
                        f"| {row['qps_batched']:,.0f} | {row['qps_batched'] / baseline_batched:.1f}x |"
                    )
        scope = "" if n >= GOAL_N and dim == GOAL_DIM else f" (the goal is set at 1M x {GOAL_DIM}: indicative only)"
        lines += [
            "",
            f"Goal check at n = {n:,}, dim {dim}{scope}:",
            "",
            f"| method | recall >= {TARGET_RECALL} | memory <= {GOAL_MEMORY:.0%} | >= {GOAL_SPEEDUP:.0f}x single "
            f"| >= {GOAL_SPEEDUP:.0f}x batched | meets goal (single) | meets goal (batched) |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in entry["methods"][1:]:
            g = m["goal"]
            lines.append(
                f"| {m['method']} | {yes_no(g['recall_ok'])} | {yes_no(g['memory_ok'])} "
                f"| {yes_no(g['speedup_single_ok'])} | {yes_no(g['speedup_batched_ok'])} "
                f"| **{yes_no(g['meets_single'])}** | **{yes_no(g['meets_batched'])}** |"
            )
    return "\n".join(lines) + "\n"


def int_list(text: str) -> list[int]:
    """``100000,1000000`` (underscores allowed) as a list of ints."""
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def output_stem(out: str) -> Path:
    """A bare name goes to benchmarks/results/; anything with a folder is used as given."""
    path = Path(out)
    return RESULTS / path if path.parent == Path(".") else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="100000,1000000", help="comma-separated database sizes")
    parser.add_argument("--dims", default="384,768", help="comma-separated dimensions")
    parser.add_argument("--queries", type=int, default=1000, help="held-out evaluation queries")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--out", default="ann", help="results file stem, without suffix")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes, dims = int_list(args.n), int_list(args.dims)
    stem = output_stem(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    env = environment()  # before the run: the load average says whether the machine was shared
    started = time.perf_counter()
    results = []
    for n in sizes:
        for dim in dims:
            results.append(bench_section(n, dim, args.queries, args.k, args.seed, started))
            gc.collect()
    report = {
        "environment": env,
        "goal": GOAL,
        "target_recall": TARGET_RECALL,
        "n": sizes,
        "dims": dims,
        "queries": args.queries,
        "tuning_queries": TUNING_QUERIES,
        "k": args.k,
        "seed": args.seed,
        "data": {
            "centres": N_CENTRES,
            "spectrum_decay": SPECTRUM_DECAY,
            "noise_ratio": NOISE_RATIO,
            "isotropic_share": ISOTROPIC_SHARE,
        },
        "run_s": time.perf_counter() - started,
        "results": results,
    }
    Path(f"{stem}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    md = markdown(report)
    Path(f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
