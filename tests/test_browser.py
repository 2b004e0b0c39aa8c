"""The web page in a real browser (Debian's Chromium driven by Playwright) against the real app on a
copy of the sample-photo index: text search with thumbnails, "more like this", the detail view,
a Korean search, adding a photo through the page (upload job to done, then open and delete the new
item), and no request to any host but the server (the page works offline).

Needs ``/usr/bin/chromium`` (``apt-get install chromium``). Saves a screenshot of the results page
to ``tests/artifacts/web-page.png`` (untracked; benchmarks/results/web-page.png is a copy kept for the README).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from PIL import Image, ImageOps
from playwright.sync_api import expect, sync_playwright

from api.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = (
    Path(__file__).resolve().parent / "artifacts" / "web-page.png"
)  # not tracked; a copy is in benchmarks/results/
WAIT_MS = 30_000  # upper bound for any one wait; the waits end as soon as the page is ready


@pytest.fixture(scope="module")
def server(sample_index, tmp_path_factory):
    """The real app on a fresh copy of the sample index (the tests add and delete items), served by
    uvicorn in a background thread on a free local port; yields the base URL."""
    index = tmp_path_factory.mktemp("browser") / "index.moair"
    shutil.copytree(sample_index, index)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(index, api_key=""), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert thread.is_alive(), "the server thread died while starting (see the log above)"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's Chromium (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the server; after the test, no request may have gone anywhere else."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server)
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    requests: list[str] = []
    opened.on("request", lambda request: requests.append(request.url))
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(  # a 4xx answer logs "Failed to load resource"; the page shows those itself
        "console",
        lambda m: (
            m.type == "error"
            and not m.text.startswith("Failed to load resource")
            and problems.append(f"console: {m.text}")
        ),
    )
    yield opened
    context.close()
    origin = urlsplit(server).netloc
    elsewhere = [
        u for u in requests if not u.startswith("data:") and urlsplit(u.removeprefix("blob:")).netloc != origin
    ]
    assert requests and not elsewhere, f"the page asked other hosts: {elsewhere}"
    assert not problems, problems


def search(page, text: str) -> None:
    page.fill("#search-input", text)
    page.press("#search-input", "Enter")
    expect(page.locator(f'#results[data-state="ready"][data-query="text:{text}"]')).to_be_attached()


def result_names(page) -> list[str]:
    return page.locator("#results .result .name").all_inner_texts()


def wait_for_thumbnails(page, count: int) -> None:
    """The first ``count`` result thumbnails were fetched and decoded (a blob URL, natural size > 0)."""
    page.wait_for_function(
        """count => {
            const imgs = [...document.querySelectorAll('#results .result img')].slice(0, count);
            return imgs.length === count
                && imgs.every(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'));
        }""",
        arg=count,
    )


def test_search_similar_detail_and_korean(page):
    page.goto("/")
    expect(page.locator("#search-input")).to_be_focused()
    expect(page.locator("#search-input")).to_have_attribute("placeholder", "Search photos — English or 한국어")
    expect(page.locator("#stats")).to_have_text("20 photos indexed")

    search(page, "a dog")
    cards = page.locator("#results .result")
    expect(cards.first).to_be_visible()
    assert cards.count() >= 6
    assert "darknet-dog.jpg" in result_names(page)[:3]
    wait_for_thumbnails(page, cards.count())
    dog = page.locator('#results .result[data-path$="darknet-dog.jpg"]')
    assert dog.locator(".evidence li").count() >= 1
    assert len(dog.locator(".score").inner_text().split(".")[1]) == 3  # three decimals
    assert dog.locator("img").get_attribute("alt").startswith("darknet-dog.jpg")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # more like this: the dog itself drops out, the list changes
    dog_id = dog.get_attribute("data-item-id")
    before = result_names(page)
    dog.locator(".more-like").click()
    expect(page.locator(f'#results[data-state="ready"][data-query="similar:{dog_id}"]')).to_be_attached()
    expect(page.locator("#results-title")).to_contain_text("More like darknet-dog.jpg")
    after = result_names(page)
    assert after and after != before and "darknet-dog.jpg" not in after
    wait_for_thumbnails(page, 3)

    # the detail view: a larger thumbnail, the verbalizations, the detections; Escape closes it
    search(page, "a dog")
    page.locator('#results .result[data-path$="darknet-dog.jpg"] .open').click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(page.locator('#detail[data-state="ready"]')).to_be_attached()
    expect(page.locator("#detail-title")).to_have_text("darknet-dog.jpg")
    expect(detail.locator(".verbalization.retrieval")).to_contain_text("dog")
    expect(detail.locator(".verbalization.moai")).to_contain_text("dog")
    expect(detail.locator('.verbalization.retrieval-ko[lang="ko"]')).to_contain_text("개")
    expect(detail.locator('.detections li[data-label="dog"]')).to_be_visible()
    expect(detail.locator(".box").first).to_be_attached()
    expect(detail.locator(".paths")).to_contain_text("darknet-dog.jpg")
    expect(detail.locator(".modality")).to_have_text("image")
    page.wait_for_function(
        "() => { const i = document.querySelector('#detail-img'); return i.complete && i.naturalWidth > 256; }"
    )
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()

    # Korean
    search(page, "고양이")
    expect(cards.first).to_be_visible()
    expect(page.locator("#results-title q")).to_have_attribute("lang", "ko")
    wait_for_thumbnails(page, 3)
    assert not page.locator("#error").is_visible()

    # a JSON error is shown in the page, readably
    # an image dropped on the page searches by image (here: the dog's own thumbnail)
    page.fill("#search-input", "")
    page.evaluate(
        """async () => {
            const dog = document.querySelector('#results .result[data-path$="darknet-dog.jpg"]') ||
                document.querySelector('#results .result');
            const blob = await (await fetch(`/items/${dog.dataset.itemId}/thumbnail?size=512`)).blob();
            const files = new DataTransfer();
            files.items.add(new File([blob], 'dropped.jpg', {type: 'image/jpeg'}));
            document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: files, bubbles: true, cancelable: true}));
        }"""
    )
    expect(page.locator("#query-chip")).to_be_visible()
    expect(page.locator('#results[data-state="ready"][data-query="image:dropped.jpg"]')).to_be_attached()
    assert result_names(page)[0] == "darknet-dog.jpg"
    page.locator("#query-chip-clear").click()
    expect(page.locator("#query-chip")).to_be_hidden()

    # "Load more" pages through the results (?k=8: eight a page)
    page.goto("/?k=8")
    search(page, "a dog")
    expect(cards).to_have_count(8)
    page.locator("#load-more").click()
    expect(cards).to_have_count(16)
    page.locator("#load-more").click()
    expect(cards).to_have_count(20)  # all the sample photos, each once
    assert len(set(result_names(page))) == 20
    expect(page.locator("#load-more")).to_be_hidden()

    page.fill("#search-input", "x" * 2001)  # over the server's limit: a 422 with a JSON error
    page.press("#search-input", "Enter")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_contain_text("at most 2000 characters")
    expect(page.locator('#results[data-state="error"]')).to_be_attached()


def test_add_a_photo_then_open_and_delete_it(page, photo, tmp_path):
    # new content: the kite photo mirrored and cropped, under a new name
    with Image.open(photo("kite")) as kite:
        mirrored = ImageOps.mirror(kite.convert("RGB"))
        width, height = mirrored.size
        new_photo = tmp_path / "my-kite.jpg"
        mirrored.crop((width // 10, height // 10, width, height)).save(new_photo, "JPEG", quality=90)

    page.goto("/")
    expect(page.locator("#stats")).to_have_text("20 photos indexed")
    page.set_input_files("#upload-input", str(new_photo))
    job = page.locator("#job-status .job").first
    expect(job).to_be_visible()
    search(page, "a dog")  # searching works while the job runs
    expect(page.locator("#results .result").first).to_be_visible()

    expect(page.locator('#job-status .job[data-state="done"]')).to_be_visible(timeout=90_000)
    expect(job.locator(".job-text")).to_have_text("Added 1 photo")
    expect(page.locator("#stats")).to_have_text("21 photos indexed")
    opener = job.locator(".job-item").first
    new_id = opener.get_attribute("data-item-id")
    opener.click()
    detail = page.locator("#detail")
    expect(page.locator(f'#detail[data-state="ready"][data-item-id="{new_id}"]')).to_be_visible()
    expect(detail.locator(".paths")).to_contain_text("my-kite")
    expect(detail.locator(".verbalization.retrieval")).not_to_be_empty()
    page.wait_for_function(
        "() => { const i = document.querySelector('#detail-img'); return i.complete && i.naturalWidth > 0; }"
    )

    # the new photo is searchable: its own picture finds it first
    page.locator("#detail-close").click()
    page.fill("#search-input", "")  # the box's text would make it an image + text search
    page.set_input_files("#image-input", str(new_photo))
    expect(page.locator("#query-chip")).to_be_visible()
    expect(page.locator('#results[data-state="ready"][data-query="image:my-kite.jpg"]')).to_be_attached()
    expect(page.locator("#results .result").first).to_have_attribute("data-item-id", new_id)

    # delete it through the detail view (with a confirmation step)
    page.locator("#results .result .open").first.click()
    expect(page.locator(f'#detail[data-state="ready"][data-item-id="{new_id}"]')).to_be_visible()
    page.locator("#detail-delete").click()
    page.locator("#delete-yes").click()
    expect(detail).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text("Removed")
    expect(page.locator("#stats")).to_have_text("20 photos indexed")
    expect(page.locator(f'#results .result[data-item-id="{new_id}"]')).to_have_count(0)
    page.locator("#query-chip-clear").click()
    expect(page.locator("#query-chip")).to_be_hidden()
