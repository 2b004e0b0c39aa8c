"""How moair stands up to a hostile user: cases tried, survived, lost.

Run: .venv/bin/python benchmarks/bench_hostile.py [--kills 30] [--requests 20]
Writes benchmarks/results/hostile.{json,md} and prints the markdown table (about 5 minutes on 2 cores).

Everything runs for real: the ``moair`` command and ``moair serve`` in their own processes, on the
bundled sample photos and a hostile collection made beside them at run time (benchmarks/hostile.py).

- **hostile files**: the collection indexed once; a file survives when it is handled as it must be
  (an odd but valid image indexed and found by an image search of itself, a bad one skipped with a
  one-line reason); lost counts good photos not indexed.
- **kill -9 while indexing**: the collection indexed again and again into one index, each run
  killed at a random moment; a kill survives when every path committed before it is still
  committed and ``verify`` finds nothing wrong; lost counts committed paths gone.
- **damaged index files**: random bytes in a vector file (which still parses) and in SQLite pages,
  a damaged configuration row, a file where the vectors folder goes; survived: said in one line
  (exit 2, no traceback) or repaired with the same search results.
- **hostile HTTP**: the real server with an API key; requests without the key (with 90 MiB
  announced, or malformed JSON), from another site's page, for foreign host names, unknown routes
  and methods, broken multipart; six 100-megapixel PNGs at once; idle and half-sent connections.
  Survived: the documented status with an ``{"error": ...}`` body (connections: closed by the
  server), and the server answering afterwards; lost counts items gone from the index.
- **wrong Python calls**: wrong types to the public API; survived: a ``MoairError``.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from hostile import make_hostile_collection  # noqa: E402
from moair_process import MOAIR, measured_moair, moair_server, peak_memory_mib  # noqa: E402

from api.guards import HEADER_TIMEOUT  # noqa: E402
from indexer.errors import MoairError  # noqa: E402
from indexer.samples import sample_photos  # noqa: E402
from indexer.shards import FOLDER as VECTORS_FOLDER  # noqa: E402
from indexer.store import DB_NAME  # noqa: E402
from retriever import Engine  # noqa: E402

RESULTS = Path(__file__).parent / "results"
KEY = "bench-key"


@dataclass
class Row:
    area: str
    tried: int = 0
    survived: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # what did not survive, for the reader

    def case(self, survived: bool, what: str) -> None:
        self.tried += 1
        self.survived += survived
        if not survived:
            self.failures.append(what)


def shown(path: Path) -> str:
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def hostile_files(work: Path, photos: list[Path]) -> tuple[Row, Path, list]:
    row = Row("hostile files in a collection")
    cases = make_hostile_collection(work / "photos", photos)
    index = work / "hostile.moair"
    started = time.monotonic()
    run, peak = measured_moair("index", work / "photos", "--index", index, "--json")
    row.notes.append(
        f"{len(cases)} files ({len(photos)} real photos), indexed in {time.monotonic() - started:.0f} s, peak "
        f"{peak:.0f} MiB"
    )
    report = json.loads(run.stdout)
    reasons = {s["path"]: s["reason"] for s in report["skipped"] + report["failed"]}
    with Engine.open(index) as engine:
        for case in cases:
            reason = reasons.get(shown(case.path))
            if case.indexed:
                try:
                    item = engine.inspect(str(case.path)).item_id
                    found = case.content_of is not None or engine.search(image=case.path, k=1)[0].item_id == item
                except MoairError:
                    found = False
                row.lost += not found
                ok = found and reason is None
            else:
                ok = bool(reason) and "\n" not in reason and case.says in reason
            if case.kind != "real photo":
                row.case(ok, f"{case.kind}: {shown(case.path.relative_to(work))}: {reason}")
    return row, index, cases


def committed_paths(index: Path) -> set[str]:
    if not (index / DB_NAME).exists():
        return set()
    db = sqlite3.connect(f"{(index / DB_NAME).as_uri()}?mode=ro", uri=True)
    db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")  # file names that are not UTF-8
    try:
        return {row[0] for row in db.execute("SELECT path FROM files")}
    finally:
        db.close()


def kills(work: Path, count: int, rng: random.Random) -> Row:
    row = Row("kill -9 while indexing")
    index = work / "killed.moair"
    committed: set[str] = set()
    mid_work = 0
    folder = work / "photos"
    started = time.monotonic()
    subprocess.run(
        [MOAIR, "index", str(folder), "--index", str(work / "timed.moair"), "-q"], capture_output=True, check=True
    )
    run_seconds = time.monotonic() - started  # a whole run: the kills fall within it
    for _ in range(count * 3):
        if row.tried >= count:
            break
        if index.exists() and rng.random() < 0.5:  # index a fresh copy of the hostile files' folder too
            shutil.rmtree(index)
            committed = set()
        process = subprocess.Popen(
            [MOAIR, "index", str(folder), "--index", str(index), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=rng.uniform(0.5, run_seconds))
            committed = committed_paths(index)
            continue  # finished before the kill
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        now = committed_paths(index)
        gone = committed - now
        problems = []
        if index.exists() and (index / DB_NAME).exists():
            with Engine.open(index) as engine:
                problems = engine.verify().problems
        row.lost += len(gone)
        row.case(
            not gone and not problems, f"kill {row.tried + 1}: {len(gone)} committed paths gone, problems {problems}"
        )
        mid_work += now != committed
        committed = now
    row.notes.append(
        f"{row.tried} kills at random moments of `moair index` runs, {mid_work} after the run had committed some"
    )
    return row


def one_error_line(run: subprocess.CompletedProcess, says: str) -> bool:
    lines = [line for line in run.stderr.splitlines() if line.strip() and not line.startswith("INFO")]
    return run.returncode == 2 and "Traceback" not in run.stderr and len(lines) == 1 and says in lines[0]


def rankings(index: Path) -> list:
    with Engine.open(index) as engine:
        return [[(h.item_id, round(h.score, 4)) for h in engine.search(q, k=20)] for q in ("a dog", "a cat", "coffee")]


def damaged_files(work: Path, source: Path, rng: random.Random) -> Row:
    row = Row("damaged index files")
    expected = rankings(source)

    def copy(name: str) -> Path:
        target = work / f"damaged-{name}.moair"
        shutil.copytree(source, target)
        return target

    for n in range(3):
        index = copy(f"shard-{n}")
        shard = sorted((index / VECTORS_FOLDER).glob("shard-*.faiss"))[0]
        data = bytearray(shard.read_bytes())
        at = rng.randrange(len(data) // 4, len(data) - 4096)
        data[at : at + 2048] = rng.randbytes(2048)
        shard.write_bytes(bytes(data))
        row.case(rankings(index) == expected, f"random bytes at {at} of {shard.name}: other search results")
    for n in range(3):
        index = copy(f"database-{n}")
        pages = (index / DB_NAME).stat().st_size // 4096
        with open(index / DB_NAME, "r+b") as f:
            f.seek(rng.randrange(2, pages) * 4096 + 100)
            f.write(rng.randbytes(3000))
        runs = [
            subprocess.run([MOAIR, *command, "--index", str(index)], capture_output=True, text=True, timeout=300)
            for command in (["search", "a dog"], ["index", str(work / "photos")], ["verify"])
        ]
        said = all(
            r.returncode == 0 or one_error_line(r, "is damaged") or (r.returncode == 1 and "problem" in r.stderr)
            for r in runs
        )
        row.case(
            said and "Traceback" not in "".join(r.stderr for r in runs),
            f"random bytes in database page: {[r.stderr[-300:] for r in runs]}",
        )
    index = copy("config")
    with sqlite3.connect(index / DB_NAME) as db:
        db.execute("UPDATE meta SET value = substr(value, 1, 40) WHERE key = 'config'")
    row.case(
        one_error_line(
            subprocess.run([MOAIR, "stats", "--index", str(index)], capture_output=True, text=True), "configuration row"
        ),
        "damaged configuration row",
    )
    index = copy("folder")
    shutil.rmtree(index / VECTORS_FOLDER)
    (index / VECTORS_FOLDER).write_text("x")
    row.case(
        one_error_line(
            subprocess.run([MOAIR, "stats", "--index", str(index)], capture_output=True, text=True), "is a file"
        ),
        "a file where the vectors folder goes",
    )
    return row


def giant_png() -> bytes:
    data = io.BytesIO()
    Image.fromarray(np.zeros((10_000, 10_000, 3), np.uint8)).save(data, "PNG", compress_level=9)
    return data.getvalue()


def hostile_http(work: Path, source: Path, repeats: int) -> Row:
    row = Row("hostile HTTP")
    index = work / "served.moair"
    shutil.copytree(source, index)
    with moair_server(index, work / "server.log", key=KEY) as (url, process):
        keyed, port = {"X-API-Key": KEY}, int(url.rsplit(":", 1)[1])
        items = httpx.get(f"{url}/stats", headers=keyed).json()["items"]

        def expect(response: httpx.Response, status: int, what: str) -> None:
            try:
                body_ok = set(response.json()) == {"error"}
            except ValueError:
                body_ok = False
            row.case(
                response.status_code == status and body_ok, f"{what}: {response.status_code} {response.text[:120]}"
            )

        multipart = {"images": ("x.jpg", b"\xff\xd8\xff" + bytes(2000), "image/jpeg")}
        for _ in range(repeats):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # 90 MiB announced, none sent
                sock.sendall(
                    f"POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {90 * 2**20}\r\n"
                    "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
                )
                answer = sock.recv(4096).decode(errors="replace")
            row.case(answer.startswith("HTTP/1.1 401"), f"no key, 90 MiB announced: {answer[:60]}")
            expect(
                httpx.post(f"{url}/search", content=b"{not json", headers={"Content-Type": "application/json"}),
                401,
                "no key, bad JSON",
            )
            expect(
                httpx.post(f"{url}/items", files=multipart, headers={**keyed, "Origin": "https://evil.example"}),
                403,
                "cross-site upload",
            )
            expect(
                httpx.post(f"{url}/search", json={"text": "a dog"}, headers={**keyed, "Origin": "null"}),
                403,
                "cross-site search",
            )
            expect(httpx.get(f"{url}/stats", headers={**keyed, "Host": "rebound.evil.example"}), 421, "foreign Host")
            expect(httpx.get(f"{url}/no/such/route", headers=keyed), 404, "unknown route")
            expect(httpx.put(f"{url}/search", json={"text": "a dog"}, headers=keyed), 405, "wrong method")
            expect(
                httpx.post(
                    f"{url}/items",
                    content=b"--x\r\nbroken",
                    headers={**keyed, "Content-Type": "multipart/form-data; boundary=x"},
                ),
                422,
                "broken multipart",
            )
        png = giant_png()
        before = peak_memory_mib(process.pid)
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.post(
                        f"{url}/search/image",
                        files={"image": ("big.png", png, "image/png")},
                        data={"k": "1"},
                        headers=keyed,
                        timeout=600,
                    ),
                    range(6),
                )
            )
        for answer in answers:
            row.case(
                answer.status_code == 200 or (answer.status_code == 503 and "retry-after" in answer.headers),
                f"100 MP image: {answer.status_code}",
            )
        row.notes.append(
            f"six 100 MP PNGs at once: {sorted(a.status_code for a in answers)}, server peak grew "
            f"{peak_memory_mib(process.pid) - before:.0f} MiB"
        )
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(repeats * 25)]
        for sock in idle[:repeats]:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        time.sleep(HEADER_TIMEOUT + 3)
        for sock in idle:
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True
            row.case(closed, "an idle connection left open")
            sock.close()
        row.notes.append(f"{len(idle)} idle or half-sent connections")
        row.lost = items - httpx.get(f"{url}/stats", headers=keyed).json()["items"]
        alive = process.poll() is None and httpx.get(f"{url}/health").status_code == 200
        row.case(alive, "the server stopped answering")
    return row


def wrong_calls(source: Path) -> Row:
    row = Row("wrong Python API calls")
    with Engine.open(source) as engine:
        calls = [
            lambda: Engine.open(3),
            lambda: engine.add(b"photo.jpg"),
            lambda: engine.add(3),
            lambda: engine.add([None]),
            lambda: engine.remove(b"x"),
            lambda: engine.remove([1.5]),
            lambda: engine.similar("1"),
            lambda: engine.similar(True),
            lambda: engine.search(3),
            lambda: engine.search("a dog", k=0),
            lambda: engine.search("a dog", k="5"),
            lambda: engine.search("a dog", modality="video"),
            lambda: engine.search("a dog", min_score=float("nan")),
            lambda: engine.search("a dog", rerank=-1),
            lambda: engine.search(image=b"not an image"),
            lambda: engine.search(""),
            lambda: engine.inspect(10**30),
            lambda: engine.inspect("/no/such/file.jpg"),
            lambda: engine.add(["\ud800.jpg"]),
            lambda: engine.ask(""),
            lambda: engine.search("a dog", time_budget=-1),
        ]
        for number, call in enumerate(calls):
            try:
                call()
                row.case(False, f"call {number} raised nothing")
            except MoairError:
                row.case(True, "")
            except Exception as e:  # what the table counts as not survived
                row.case(False, f"call {number}: {type(e).__name__}: {e}")
    return row


def markdown(rows: list[Row], meta: dict) -> str:
    lines = [
        f"# Hostile use: cases tried, survived, lost ({meta['date']}, {meta['machine']})",
        "",
        "| area | cases tried | survived | lost | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(f"| {row.area} | {row.tried} | {row.survived} | {row.lost} | {'; '.join(row.notes)} |")
    failures = [f"- {row.area}: {failure}" for row in rows for failure in row.failures]
    lines += [
        "",
        "Lost: good photos not indexed, committed paths gone after a kill, items gone from a served index.",
        "",
        "Not survived:" if failures else "Every case survived.",
        *failures[:40],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--requests", type=int, default=20, help="repeats of each hostile HTTP request")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder, _ = sample_photos()
    photos = sorted(folder.iterdir())
    with tempfile.TemporaryDirectory(prefix="moair-hostile-") as temporary:
        work = Path(temporary)
        files_row, index, _ = hostile_files(work, photos)
        rows = [
            files_row,
            kills(work, args.kills, rng),
            damaged_files(work, index, rng),
            hostile_http(work, index, args.requests),
            wrong_calls(index),
        ]
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores",
        "command": " ".join(sys.argv[1:]) or "defaults",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    table = markdown(rows, meta)
    (RESULTS / "hostile.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
