"""Vector index types: which FAISS index to build for a collection, how to train it, how to search
it, and how to tune its search knob to a recall target.

Index types are faiss ``index_factory`` strings over inner-product vectors with ids:

- ``Flat``: exact search, chosen while a query would scan at most ``EXACT_SCAN_BYTES`` of vectors;
- ``IVF{nlist}_HNSW32,{codes}``: an inverted file whose coarse quantizer is an HNSW graph (a plain
  one below 1024 lists), with compressed codes, chosen when the collection is larger: the most
  accurate codes that fit the memory budget (full floats, SQ8, SQ4, or OPQ+PQ product codes);
- anything else ``index_factory`` builds (``HNSW32``, ``IVF4096,PQ32``, ...), when given by hand.

Lossy codes (SQ, PQ) find candidates only: the best ``REFINE_FACTOR * k`` are re-ranked with the
exact vectors, which moair keeps on disk in SQLite anyway (``rerank``), so memory holds only the
codes while the ranking and the scores are exact.

The knob that trades recall for speed (``nprobe`` for IVF, ``efSearch`` for HNSW) is tuned by
``tune``: the smallest value whose recall@k against exact search reaches the target.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faiss
import numpy as np

from indexer.errors import MoairError

AUTO = "auto"
EXACT = "Flat"
EXACT_SCAN_BYTES = 200 * 2**20  # exact search while one query scans at most this much (~20 ms on 2 cores)
DEFAULT_MEMORY_FRACTION = 0.25  # an approximate index takes at most this share of Flat's memory by default
ID_BYTES = 8  # an IVF list stores an int64 id per vector
HNSW_QUANTIZER_MIN_LISTS = 1024
MIN_TRAINING_PER_LIST = 39  # faiss warns below this many training points per centroid
TRAINING_PER_LIST = 64
MIN_IVF_VECTORS = 16 * TRAINING_PER_LIST  # fewer than this: always exact
REFINE_FACTOR = 4  # lossy codes: re-rank this many times k candidates with exact vectors
TRAINING_SAMPLE_BYTES = 1 << 30
DEFAULT_RECALL_TARGET = 0.95
TUNING_K = 10


@dataclass(frozen=True)
class Knob:
    """The search parameter that trades recall for speed, and the values tuning tries, in order."""

    name: str  # nprobe or efSearch
    values: tuple[int, ...]


# Sizes in an index_factory string past which building it alone would take gigabytes (faiss
# allocates one inverted list per IVF list, links per HNSW node) or never work.
SIZE_LIMITS = (
    (r"IVF(\d+)", 1 << 20, "IVF lists"),
    (r"HNSW(\d+)", 256, "HNSW links per node"),
    (r"(?:PQ|PCAR?|OPQ|RR)(\d+)", 1 << 14, "dimensions or sub-quantizers"),
)


def parse_index_type(spec: str) -> str:
    """A user's ``--index-type``: ``auto``, or a faiss index_factory string (its sizes checked,
    then checked by building it)."""
    spec = spec.strip()
    if spec.lower() == AUTO:
        return AUTO
    spec = re.sub(r"^IDMap2?,", "", spec)  # ids are added by moair
    for pattern, limit, what in SIZE_LIMITS:
        for match in re.finditer(pattern, spec):
            if int(match.group(1)) > limit:
                hint = f" (IVF{ivf_lists(10**8)} suits 10^8 items)" if what == "IVF lists" else ""
                raise MoairError(f"{spec!r} asks for {int(match.group(1)):,} {what}; at most {limit:,}{hint}")
    try:
        faiss.index_factory(768, spec, faiss.METRIC_INNER_PRODUCT)  # 768 is divisible by most PQ sizes
    except RuntimeError as e:
        raise MoairError(
            f"{spec!r} is not a faiss index_factory string ({_faiss_message(e)}); e.g. auto, Flat, "
            "IVF4096_HNSW32,SQ8, HNSW32"
        ) from None
    return spec


def _faiss_message(error: RuntimeError) -> str:
    """The useful line of a faiss C++ exception."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = lines[-1] if lines else "faiss error"
    return message.split("Error: ")[-1][:160]


def parse_size(text: str) -> int:
    """Bytes from ``512MiB``, ``2GB``, ``1.5G``, ``1000000``."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*", text.lower())
    if not match:
        raise MoairError(f"{text!r} is not a size; write e.g. 512MiB, 2GiB or 4GB")
    number, unit, binary = match.groups()
    base = 1024 if binary.startswith("i") or not binary else 1000
    return int(float(number) * base ** "bkmgt".index(unit or "b"))


def flat_bytes(n: int, dim: int) -> int:
    return n * dim * 4


def _code_ladder(dim: int) -> list[tuple[str, str, int]]:
    """IVF codes from most to least memory: (what goes before the IVF part, the codes, the
    dimension the IVF part sees). SQ6 is left out: with re-ranking, codes only find candidates,
    and SQ6 found the same ones as SQ4 and SQ8 while scanning slower than both."""
    pq_m = max(4, min(64, dim // 8))
    return [("", "Flat", dim), ("", "SQ8", dim), ("", "SQ4", dim), (f"OPQ{pq_m}_{pq_m * 4},", f"PQ{pq_m}", pq_m * 4)]


def code_bytes(codes: str, dim: int) -> int:
    """Bytes of one vector's IVF entry (codes and id)."""
    if codes.startswith("PQ"):
        return int(codes[2:]) + ID_BYTES
    per_dim = {"Flat": 4.0, "SQ8": 1.0, "SQ6": 0.75, "SQ4": 0.5}[codes]
    return math.ceil(dim * per_dim) + ID_BYTES


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 4 sqrt(n), a power of two, with enough training points."""
    lists = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
    while lists > 16 and lists * MIN_TRAINING_PER_LIST > n:
        lists //= 2
    return max(lists, 16)


def choose_index_type(n: int, dim: int, memory_budget: int | None = None, shards: int = 1) -> str:
    """The index type for ``n`` vectors of ``dim`` floats: exact ``Flat`` while a query scans at
    most ``EXACT_SCAN_BYTES`` (and Flat fits ``memory_budget``), else IVF with the most accurate
    codes that fit the budget (default: a quarter of what Flat would take), counting the coarse
    quantizer once per shard."""
    flat = flat_bytes(n, dim)
    if n < MIN_IVF_VECTORS or (flat <= EXACT_SCAN_BYTES and (memory_budget is None or flat <= memory_budget)):
        return EXACT  # too few vectors to train an IVF index on, or exact search is cheap enough
    budget = memory_budget if memory_budget is not None else int(flat * DEFAULT_MEMORY_FRACTION)
    lists = ivf_lists(n)
    quantizer = f"IVF{lists}_HNSW32" if lists >= HNSW_QUANTIZER_MIN_LISTS else f"IVF{lists}"

    def quantizer_bytes(ivf_dim: int) -> int:
        return lists * ivf_dim * 4 + (lists * 32 * 2 * 4 if lists >= HNSW_QUANTIZER_MIN_LISTS else 0)

    for before, codes, ivf_dim in _code_ladder(dim):
        if n * code_bytes(codes, ivf_dim) + shards * quantizer_bytes(ivf_dim) <= budget:
            break
    return f"{before}{quantizer},{codes}"


def estimated_bytes(spec: str, n: int, dim: int) -> int:
    """About how much memory an index of type ``spec`` takes for ``n`` vectors: the codes, the IVF
    coarse quantizer, the HNSW links."""
    total = n * bytes_per_vector(spec, dim)
    lists = re.search(r"IVF(\d+)", spec)
    if lists:
        total += int(lists.group(1)) * dim * 4
    links = re.match(r"HNSW(\d+)", spec)
    if links:
        total += n * int(links.group(1)) * 2 * 4
    return int(total)


def physical_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def bytes_per_vector(spec: str, dim: int) -> float:
    """About how many bytes ``spec`` stores per vector (for sizing shard files)."""
    codes = spec.rsplit(",", 1)[-1]
    match = re.match(r"PCAR?(\d+)", spec)
    ivf_dim = int(match.group(1)) if match else dim
    try:
        return code_bytes(codes, ivf_dim)
    except (KeyError, ValueError):
        return dim * 4 + ID_BYTES  # an unknown layout: assume full floats


def build_index(spec: str, dim: int) -> faiss.Index:
    """An empty inner-product index of type ``spec`` that takes ids (``IDMap2`` added where needed)."""
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise MoairError(
            f"index type {spec!r} cannot be built for {dim}-dimensional vectors ({_faiss_message(e)}); a PQ code"
            " needs a dimension its size divides: put an OPQ rotation first (e.g. OPQ64_256,IVF4096_HNSW32,PQ64)"
        ) from None
    if faiss.try_extract_index_ivf(index) is None:
        index = faiss.IndexIDMap2(index)
    return index


def train(index: faiss.Index, sample: np.ndarray) -> None:
    """Train ``index`` on ``sample``. A PCA step is trained first and then applied without
    centring: faiss's PCA subtracts the mean, which under inner product would add a per-item bias
    of -<mean, x>; an uncentred orthogonal projection only shifts each query's scores by a
    constant and drops the low-variance directions."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        for step in range(index.chain.size()):
            transform = faiss.downcast_VectorTransform(index.chain.at(step))
            if not transform.is_trained:
                transform.train(sample)
            if isinstance(transform, faiss.PCAMatrix):  # zero mean and bias, however faiss rebuilds them
                faiss.copy_array_to_vector(np.zeros(transform.d_in, dtype=np.float32), transform.mean)
                faiss.copy_array_to_vector(np.zeros(transform.d_out, dtype=np.float32), transform.b)
            sample = transform.apply(sample)
        index.index.train(sample)
        index.is_trained = True
    else:
        index.train(sample)


def minimum_training(index: faiss.Index) -> int:
    """The fewest vectors ``index`` can be trained on (k-means needs a point per list, PQ 256)."""
    if index.is_trained:
        return 0
    ivf = faiss.try_extract_index_ivf(index)
    return max(ivf.nlist if ivf is not None else 0, 256)


def training_size(index: faiss.Index, n: int, dim: int) -> int:
    """How many vectors to train ``index`` on (0 when it needs no training)."""
    if index.is_trained:
        return 0
    ivf = faiss.try_extract_index_ivf(index)
    lists = ivf.nlist if ivf is not None else 256
    wanted = max(MIN_TRAINING_PER_LIST * lists, min(TRAINING_PER_LIST * lists, TRAINING_SAMPLE_BYTES // (dim * 4)))
    return min(n, wanted)


def knob(index: faiss.Index) -> Knob | None:
    """The recall/speed knob of ``index``, or None for exact search."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return Knob("nprobe", tuple(v for v in _steps(1, ivf.nlist) if v < ivf.nlist) + (ivf.nlist,))
    if _find_hnsw(index) is not None:
        return Knob("efSearch", _steps(16, 2048))
    return None


def _steps(low: int, high: int) -> tuple[int, ...]:
    """Powers of two from ``low`` to ``high`` with 1.5x steps between them (1, 2, 3, 4, 6, 8, 12, ...)."""
    values = set()
    power = low
    while power <= high:
        values.update(v for v in (power, power * 3 // 2) if v <= high)
        power *= 2
    return tuple(sorted(values))


def _find_hnsw(index: faiss.Index) -> faiss.IndexHNSW | None:
    index = faiss.downcast_index(index)
    while True:
        if isinstance(index, faiss.IndexHNSW):
            return index
        inner = getattr(index, "index", None)
        if inner is None:
            return None
        index = faiss.downcast_index(inner)


def search_params(
    index: faiss.Index, knob_value: int | None, selector: faiss.IDSelector | None
) -> faiss.SearchParameters | None:
    """Search parameters shaped for ``index`` (faiss checks their type): the knob and an id selector.
    The caller keeps ``selector`` alive for the duration of the search."""
    if knob_value is None and selector is None:
        return None
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexShards):
        return search_params(index.at(0), knob_value, selector) if index.count() else None
    if isinstance(index, faiss.IndexPreTransform):
        inner = search_params(index.index, knob_value, selector)
        return faiss.SearchParametersPreTransform(index_params=inner) if inner is not None else None
    if isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=knob_value or index.nprobe, max_codes=0)
        if isinstance(faiss.downcast_index(index.quantizer), faiss.IndexHNSW):
            # the HNSW quantizer must return nprobe lists: its beam must be at least that wide
            params.quantizer_params = faiss.SearchParametersHNSW(efSearch=max(2 * params.nprobe, 64))
    elif isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=knob_value or index.hnsw.efSearch)
    elif isinstance(index, faiss.IndexIDMap):  # IDMap translates the selector and passes the params on
        return search_params(index.index, knob_value, selector)
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ truth| / |truth| over query rows (the standard ANN recall@k); -1 marks no id."""
    found, truth = np.asarray(found), np.asarray(truth)
    wanted = truth >= 0
    hits = ((truth[:, :, None] == found[:, None, :]).any(axis=2) & wanted).sum()
    return float(hits / wanted.sum()) if wanted.any() else 1.0


@dataclass
class Tuning:
    """The knob value chosen for a recall target, and the recall it measured."""

    knob: str | None
    value: int | None
    recall: float
    target: float
    queries: int
    reached: bool


def tune(
    index: faiss.Index,
    search: Callable[[np.ndarray, int, int | None], np.ndarray],
    queries: np.ndarray,
    truth: np.ndarray,
    target: float = DEFAULT_RECALL_TARGET,
) -> Tuning:
    """The smallest knob value whose recall@k (k = truth's width) reaches ``target``, where
    ``search(queries, k, knob_value)`` returns ids; the largest value tried if none does."""
    choice = knob(index)
    k = truth.shape[1]
    if choice is None:
        return Tuning(None, None, recall_at_k(search(queries, k, None), truth), target, len(queries), True)
    best = Tuning(choice.name, choice.values[-1], 0.0, target, len(queries), False)
    for value in choice.values:
        recall = recall_at_k(search(queries, k, value), truth)
        if recall >= target:
            return Tuning(choice.name, value, recall, target, len(queries), True)
        if recall > best.recall:
            best = Tuning(choice.name, value, recall, target, len(queries), False)
    return best


def refines(spec: str) -> bool:
    """Whether ``spec`` stores lossy codes, whose candidates are re-ranked with exact vectors."""
    return bool(re.search(r"(^|,)(OPQ\d|PQ\d|SQ\d|PCA|LSH|RQ|LSQ|PRQ|PLSQ|ITQ)", spec))


def refine_factor(spec: str) -> int:
    """How many candidates per result ``spec``'s search gathers for re-ranking (1: none)."""
    return REFINE_FACTOR if refines(spec) else 1


def rerank(
    queries: np.ndarray, candidates: np.ndarray, exact_vectors: Callable[[np.ndarray], np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (scores, ids) per query among its candidate ids (-1: none), scored with
    ``exact_vectors(ids)``, which returns one row per id."""
    wanted = np.unique(candidates[candidates >= 0])
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    if len(wanted):
        rows = exact_vectors(wanted)
        position = np.searchsorted(wanted, np.where(candidates >= 0, candidates, wanted[0]))
        for q, query in enumerate(np.asarray(queries, dtype=np.float32)):
            valid = candidates[q] >= 0
            scores[q, valid] = rows[position[q, valid]] @ query
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, 1)
    top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, 1), -1)
    return top_scores, top_ids


def serialized_bytes(index: faiss.Index) -> int:
    """Size of ``index`` written out (about its size in memory), counted without a copy."""
    size = 0

    def count(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return size


def exact_top_k(
    queries: np.ndarray, chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], k: int
) -> np.ndarray:
    """Exact top-``k`` ids per query by inner product over (ids, vectors) chunks, kept on a heap
    (faiss.ResultHeap), so the vectors never need to be in memory at once."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    for ids, vectors in chunks():
        scores = queries @ np.ascontiguousarray(vectors, dtype=np.float32).T
        heap.add_result(np.ascontiguousarray(scores), np.ascontiguousarray(np.broadcast_to(ids, scores.shape)))
    heap.finalize()
    return heap.I
