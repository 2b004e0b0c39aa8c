"""Hostile clients (issue 15): the real ``moair serve`` process on a copy of the sample index,
called over loopback as a hostile client would: another site's page, a foreign Host name, bodies
sent without the key, giant images at once, long answers beside searches, idle connections.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from api.guards import HEADER_TIMEOUT

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from moair_process import MOAIR, moair_server, peak_memory_mib  # noqa: E402

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def index_copy(sample_index, tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("served") / "copy.moair"
    shutil.copytree(sample_index, index)
    return index


@dataclass
class Served:
    url: str
    process: subprocess.Popen

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def server(index_copy, tmp_path_factory):
    with moair_server(
        index_copy, tmp_path_factory.mktemp("log") / "server.log", "--allowed-host", "photos.example.org"
    ) as running:
        yield Served(*running)


def test_a_foreign_host_name_is_refused(server):
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1; its requests carry
    Host: evil.example."""
    response = httpx.get(f"{server.url}/stats", headers={"Host": "evil.example"})
    assert response.status_code == 421 and "--allowed-host" in response.json()["error"]
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "photos.example.org"):
        assert httpx.get(f"{server.url}/stats", headers={"Host": host}).status_code == 200, host


def test_another_sites_page_cannot_upload_or_search_without_a_key(server, photo):
    before = httpx.get(f"{server.url}/stats").json()["items"]
    files = {"images": ("x.jpg", photo("dog").read_bytes(), "image/jpeg")}
    for origin in ("https://evil.example", "null"):  # a form on another site; a sandboxed frame
        response = httpx.post(f"{server.url}/items", files=files, headers={"Origin": origin})
        assert response.status_code == 403 and "--cors-origin" in response.json()["error"], response.text
        assert httpx.post(f"{server.url}/search", json={"text": "a dog"}, headers={"Origin": origin}).status_code == 403
    assert httpx.get(f"{server.url}/jobs").json() == [] and httpx.get(f"{server.url}/stats").json()["items"] == before
    # the server's own page, and clients that send no Origin (scripts, curl), are served
    own = httpx.post(f"{server.url}/search", json={"text": "a dog"}, headers={"Origin": server.url})
    assert own.status_code == 200 and httpx.post(f"{server.url}/search", json={"text": "a dog"}).status_code == 200


def test_every_error_is_a_json_error(server):
    cases = [
        httpx.get(f"{server.url}/no/such/route"),
        httpx.put(f"{server.url}/search", json={"text": "a dog"}),
        httpx.post(
            f"{server.url}/items", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"}
        ),
        httpx.post(f"{server.url}/search", content=b"{not json", headers={"Content-Type": "application/json"}),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500 and set(response.json()) == {"error"}, (
            response.request.url,
            response.text,
        )


def test_a_thumbnail_is_shown_only_while_the_file_holds_what_was_indexed(tmp_path, photo, samples):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo("dog"), folder / "dog.jpg")
    index = tmp_path / "x.moair"
    assert (
        subprocess.run([MOAIR, "index", str(folder), "--index", str(index), "-q"], capture_output=True).returncode == 0
    )
    with moair_server(index, tmp_path / "server.log") as (url, _):
        assert httpx.get(f"{url}/items/1/thumbnail").status_code == 200
        (folder / "dog.jpg").unlink()
        (folder / "dog.jpg").symlink_to(photo("chelsea"))  # another picture behind the indexed name
        swapped = httpx.get(f"{url}/items/1/thumbnail")
        assert swapped.status_code == 404 and "changed since it was indexed" in swapped.json()["error"]


@pytest.fixture(scope="module")
def keyed_server(index_copy, tmp_path_factory):
    with moair_server(index_copy, tmp_path_factory.mktemp("log") / "server.log", key=KEY) as running:
        yield Served(*running)


def test_the_key_is_checked_before_the_body_is_read(keyed_server):
    with socket.create_connection(("127.0.0.1", keyed_server.port), timeout=10) as sock:
        # 90 MiB announced, none sent: the answer must come without waiting for it
        sock.sendall(
            f"POST /items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {90 * 2**20}\r\n\r\n".encode()
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 401"), answer
    malformed = httpx.post(
        f"{keyed_server.url}/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 401
    good = httpx.post(f"{keyed_server.url}/search", json={"text": "a dog"}, headers={"X-API-Key": KEY})
    assert good.status_code == 200


def jpeg_bytes(image: Image.Image) -> bytes:
    data = io.BytesIO()
    image.save(data, "JPEG")
    return data.getvalue()


def giant_png() -> bytes:
    """100 megapixels (the most moair decodes) in a few hundred KB."""
    data = io.BytesIO()
    Image.fromarray(np.zeros((10_000, 10_000, 3), np.uint8)).save(data, "PNG", compress_level=9)
    return data.getvalue()


def test_giant_images_at_once_are_decoded_within_a_memory_budget(server):
    png = giant_png()
    baseline = peak_memory_mib(server.process.pid)

    def search() -> httpx.Response:
        return httpx.post(
            f"{server.url}/search/image", files={"image": ("big.png", png, "image/png")}, data={"k": "1"}, timeout=300
        )

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: search(), range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, [a.text[:200] for a in answers]
    assert all(a.headers.get("retry-after") for a in answers if a.status_code == 503)
    grown = peak_memory_mib(server.process.pid) - baseline
    assert grown < 2.5 * 1024, f"decoding grew the server by {grown:.0f} MiB"  # the 2 GiB budget and some slack


def test_idle_connections_are_closed(server):
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(200)]
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    slow.sendall(b"GET /health HTTP/1.1\r\n")  # headers begun, never finished
    time.sleep(HEADER_TIMEOUT + 3)
    for sock in [*idle, slow]:
        try:
            assert sock.recv(1) == b""  # closed by the server
        except ConnectionResetError:
            pass
        sock.close()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_answers_being_generated_never_hold_back_a_search(server, samples):
    """Neither directly (a search thread busy generating) nor through a reload (an upload that
    commits while answers are generated switches the server to the new index at once)."""
    finished: dict[str, float] = {}

    def ask(name: str) -> None:
        response = httpx.post(
            f"{server.url}/ask",
            json={"question": "Is there a dog next to a bicycle?", "k": 2, "stream": False},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        finished[name] = time.monotonic()

    asking = [threading.Thread(target=ask, args=(f"ask{n}",)) for n in range(2)]
    for thread in asking:
        thread.start()
    time.sleep(1.0)  # both answers on their way: loading the generator, or generating
    search = httpx.post(f"{server.url}/search", json={"text": "a cat"}, timeout=300)
    searched = time.monotonic()
    photo = Image.open(samples / "darknet-dog.jpg").rotate(180)  # new content: indexed, committed, reloaded
    job = httpx.post(
        f"{server.url}/items", files={"images": ("upside-down.jpg", jpeg_bytes(photo), "image/jpeg")}
    ).json()
    while job["state"] not in ("done", "failed"):
        time.sleep(0.05)
        job = httpx.get(f"{server.url}/jobs/{job['id']}").json()
    uploaded = time.monotonic()
    after_reload = httpx.post(f"{server.url}/search", json={"text": "a cat"}, timeout=300)
    searched_after_reload = time.monotonic()
    for thread in asking:
        thread.join()
    assert search.status_code == 200 and after_reload.status_code == 200 and job["state"] == "done", job
    assert searched < min(finished.values()), "the search waited for an answer to finish"
    assert uploaded < searched_after_reload < min(finished.values()), (
        "the upload's reload waited for an answer to finish"
    )
    # a crowd of answers beyond the queue is refused as busy, not queued for minutes
    with ThreadPoolExecutor(8) as pool:
        crowd = list(
            pool.map(
                lambda _: httpx.post(
                    f"{server.url}/ask",
                    json={"question": "Is there a dog?", "k": 1, "stream": False, "time_budget": 5},
                    timeout=300,
                ),
                range(8),
            )
        )
    assert {r.status_code for r in crowd} <= {200, 503} and any(r.status_code == 503 for r in crowd)
    assert all(r.headers.get("retry-after") for r in crowd if r.status_code == 503)
