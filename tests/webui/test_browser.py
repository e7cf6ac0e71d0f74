"""The web UI in a real browser (headless Chromium) against a real ``lookalike serve``.

One server per module serves an indexed, mapped sample catalogue; the tests that
stop a server or need a read key start their own. Every test leaves screenshots
in ``test-artifacts/browser/`` for a person to look at.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import images_factory
import pytest
import urllib3
from local_http import LocalServer
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from site_harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    KEY,
    SCRIPT_TITLE,
    Catalogue,
    Server,
    build_home,
    free_port,
    settings_values,
    start_server,
    write_manifest_catalogue,
)
from worker_harness import WAIT, Procs, Setup, tiny_model  # noqa: F401 (a fixture)

TIMEOUT_MS = 20_000
PROBLEM = "application/problem+json"


# -- the site and the browser ---------------------------------------------------------


@dataclass
class Site:
    setup: Setup
    server: Server
    catalogue: Catalogue
    version: str

    @property
    def base(self) -> str:
        return self.server.base


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Catalogue:
    return write_manifest_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory) -> Iterator[Procs]:
    started = Procs(tmp_path_factory.mktemp("procs"))
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def homes(tmp_path_factory, tiny_model, catalogue, module_procs):  # noqa: F811
    """Two servers on one indexed home: an open one, and one that wants a key for reads.

    Both start at once; the second (stopped by its test) boots while the others run.
    """
    home = tmp_path_factory.mktemp("site") / "home"
    setup = Setup(settings_values(home, tiny_model, free_port()), home)
    version = build_home(setup, catalogue)
    keyed = Setup(settings_values(home, tiny_model, free_port(), api_read_key_required=True),
                  home)  # fmt: skip
    servers = start_server(module_procs, setup), start_server(module_procs, keyed)
    return Site(setup, servers[0].wait_ready(), catalogue, version), servers[1]


@pytest.fixture(scope="module")
def site(homes) -> Site:
    return homes[0]


@pytest.fixture(scope="module")
def keyed_server(homes) -> Server:
    return homes[1].wait_ready()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class Watch:
    """What a page said while a test drove it: dialogs, script errors, policy violations."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def policy_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e]


@pytest.fixture
def page(browser, request) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    watch = Watch()
    opened.on("dialog", lambda dialog: (watch.dialogs.append(dialog.message), dialog.dismiss()))
    opened.on("pageerror", lambda error: watch.errors.append(str(error)))
    opened.on("console", lambda msg: msg.type == "error" and watch.errors.append(msg.text))
    opened.watch = watch
    try:
        yield opened
    finally:
        shoot(opened, request.node.name)
        context.close()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)


def upload(page: Page, path) -> None:
    page.set_input_files("#file", str(path))
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")


def problem(status: int, detail: str) -> dict:
    body = {"type": "about:blank", "title": "error", "status": status, "detail": detail}
    return {"status": status, "content_type": PROBLEM, "body": json.dumps(body)}


# -- search --------------------------------------------------------------------------------


def test_upload_a_photo_and_see_results(site, page):
    product, shots = sorted(site.catalogue.photos.items())[1]
    page.goto(site.base + "/")
    expect(page.locator("#index-version")).to_contain_text(site.version)
    upload(page, shots[0])
    cards = page.locator("#results a.result")
    total = sum(len(shots) for shots in site.catalogue.photos.values())
    expect(cards).to_have_count(min(total, 24))  # the page asks for 24
    first = cards.first
    expect(first.locator(".title")).to_have_text(site.catalogue.titles[product])
    label = site.catalogue.labels[product]
    expect(first.locator(".meta")).to_have_text(f"{label} · #{product}")
    assert float(first.locator(".score").inner_text()) == pytest.approx(1.0, abs=1e-3)
    expect(page.locator("#preview-img")).to_have_attribute("src", re.compile(r"^blob:"))
    expect(page.locator("#results-info")).to_contain_text(f"index {site.version}")
    # every thumbnail actually loaded (the page's policy allows this site's images)
    page.wait_for_function(
        "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)"
    )
    assert page.watch.errors == [] and page.watch.dialogs == []
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: the grid narrows
    columns = page.evaluate(
        "getComputedStyle(document.getElementById('results')).gridTemplateColumns.split(' ').length"
    )
    assert columns == 2
    shoot(page, "search_phone")


def test_group_by_product_and_min_score_shape_the_results(site, page):
    _, shots = sorted(site.catalogue.photos.items())[2]
    page.goto(site.base + "/")
    upload(page, shots[0])
    page.check("#group")
    expect(page.locator("#results a.result")).to_have_count(len(site.catalogue.photos))
    products = page.locator("#results .meta").all_inner_texts()
    assert len(set(products)) == len(products)  # one card per product
    page.fill("#min-score", "0.9999")
    page.locator("#min-score").dispatch_event("change")
    expect(page.locator("#results a.result")).to_have_count(1)
    assert "min_score=0.9999" in page.url and "group=1" in page.url


def test_click_a_result_to_search_from_it(site, page):
    _, shots = sorted(site.catalogue.photos.items())[3]
    page.goto(site.base + "/")
    upload(page, shots[0])
    clicked = page.locator("#results a.result").nth(4)
    item_id = clicked.get_attribute("data-item")
    clicked.click()
    expect(page).to_have_url(f"{site.base}/?item={item_id}")
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")
    expect(page.locator("#results a.result").first).to_have_attribute("data-item", item_id)
    expect(page.locator("#preview-img")).to_have_attribute(
        "src", f"/api/v1/items/{item_id}/thumbnail"
    )
    # the results are links: keyboard focus reaches them, and back/forward repeat searches
    page.locator("#results a.result").first.focus()
    expect(page.locator("#results a.result").first).to_be_focused()
    second = page.locator("#results a.result").nth(1).get_attribute("data-item")
    page.locator("#results a.result").nth(1).press("Enter")
    expect(page).to_have_url(f"{site.base}/?item={second}")
    expect(page.locator("#results a.result").first).to_have_attribute("data-item", second)
    page.go_back()
    expect(page).to_have_url(f"{site.base}/?item={item_id}")
    expect(page.locator("#results a.result").first).to_have_attribute("data-item", item_id)
    assert page.watch.errors == []


PASTE_FILE = """async ([bytes, name]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], name, { type: "image/jpeg" }));
  document.body.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
}"""
PASTE_TEXT = """(text) => {
  const data = new DataTransfer();
  data.setData("text/plain", text);
  document.body.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
}"""
DROP_FILE = """([bytes, name]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], name, { type: "image/jpeg" }));
  document.getElementById("drop").dispatchEvent(
    new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""


def test_paste_or_drop_an_image_or_paste_its_url(site, page):
    products = sorted(site.catalogue.photos.items())
    page.goto(site.base + "/")
    for number, script in ((1, PASTE_FILE), (2, DROP_FILE)):
        product, shots = products[number]
        page.evaluate(script, [list(shots[1].read_bytes()), "photo.jpg"])
        expect(page.locator("body")).to_have_attribute("data-search-state", "done")
        first = page.locator("#results a.result").first
        expect(first.locator(".meta")).to_contain_text(f"#{product}")
        expect(first.locator(".score")).to_have_text("1.000")
    product, shots = products[4]
    with LocalServer() as shop:  # the API fetches the URL itself (loopback allowed here)
        shop.serve("/photo.jpg", shots[2].read_bytes())
        page.evaluate(PASTE_TEXT, shop.url("/photo.jpg"))
        expect(page.locator("#preview-caption")).to_have_text(f"image at {shop.url('/photo.jpg')}")
        expect(page.locator("#results a.result").first.locator(".meta")).to_contain_text(
            f"#{product}"
        )
        expect(page.locator("#results a.result").first.locator(".score")).to_have_text("1.000")
    assert page.watch.errors == []


def test_a_title_with_markup_is_shown_as_text(site, page):
    product = next(p for p, t in site.catalogue.titles.items() if t == SCRIPT_TITLE)
    page.goto(site.base + "/")
    upload(page, site.catalogue.photos[product][0])
    first = page.locator("#results a.result").first
    expect(first.locator(".title")).to_have_text(SCRIPT_TITLE)
    assert first.locator("img").get_attribute("alt") == SCRIPT_TITLE
    assert page.locator("#results script").count() == 0
    assert page.watch.dialogs == [] and page.watch.errors == []


def test_a_file_that_is_not_an_image_shows_the_apis_reason(site, page, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"this is not a JPEG at all")
    page.goto(site.base + "/")
    page.set_input_files("#file", str(fake))
    expect(page.locator("body")).to_have_attribute("data-search-state", "error")
    expect(page.locator("#message")).to_contain_text("image is not an image we accept")
    expect(page.locator("#results a.result")).to_have_count(0)



# -- region query: a box dragged on the preview --------------------------------------------

# Where the photo is drawn inside the preview <img> (object-fit: contain), in page pixels.
PHOTO_FRAME = """() => {
  const img = document.getElementById("preview-img");
  const rect = img.getBoundingClientRect();
  const scale = Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight);
  const width = img.naturalWidth * scale, height = img.naturalHeight * scale;
  return {left: rect.left + (rect.width - width) / 2, top: rect.top + (rect.height - height) / 2,
          width, height, naturalWidth: img.naturalWidth};
}"""


def two_products_photo(site: Site, folder) -> tuple:
    """A PNG of two catalogue shots side by side (640x320); the products, left and right."""
    from PIL import Image

    products = sorted(site.catalogue.photos.items())
    (left, left_shots), (right, right_shots) = products[1], products[3]
    photo = Image.new("RGB", (640, 320))
    photo.paste(Image.open(left_shots[0]).convert("RGB"), (0, 0))
    photo.paste(Image.open(right_shots[0]).convert("RGB"), (320, 0))
    path = folder / "two-products.png"
    photo.save(path)
    return path, left, right


def drag(page: Page, frame: dict, start: tuple, end: tuple) -> None:
    """Drag the mouse from ``start`` to ``end``, fractions of the drawn photo's size."""
    def at(point):
        return frame["left"] + point[0] * frame["width"], frame["top"] + point[1] * frame["height"]

    page.mouse.move(*at(start))
    page.mouse.down()
    page.mouse.move(*at(end), steps=6)
    page.mouse.up()


def is_search(response) -> bool:
    return response.url.endswith("/api/v1/search") and response.request.method == "POST"


def sent_box(response) -> list[int] | None:
    """The box a search asked for, as the API echoes it (Chromium keeps a form's file
    body from the page's request record, so the answer is where the box shows)."""
    assert response.status == 200, response.text()
    return response.json()["box"]


def test_drag_a_box_on_the_preview_to_search_by_that_region(site, page, tmp_path):
    photo, left, right = two_products_photo(site, tmp_path)
    page.goto(site.base + "/")
    upload(page, photo)
    region = page.locator("#region")
    clear = page.locator("#region-clear")
    expect(region).to_be_hidden()
    expect(clear).to_be_hidden()
    expect(page.locator("#region-hint")).to_have_text("Drag on the photo to search by a region")
    frame = page.evaluate(PHOTO_FRAME)
    assert frame["naturalWidth"] == 640

    for product, start, end in ((left, (0.005, 0.01), (0.5, 0.99)),
                                (right, (0.995, 0.99), (0.5, 0.01))):  # fmt: skip
        with page.expect_response(is_search) as asked:
            drag(page, frame, start, end)
        expect(page.locator("body")).to_have_attribute("data-search-state", "done")
        box = sent_box(asked.value)
        expected = [0, 0, 320, 320] if product == left else [320, 0, 640, 320]
        # one page pixel is 640 / width photo pixels: the box is the half within that
        slack = 640 / frame["width"] + 1
        assert all(abs(a - b) <= slack for a, b in zip(box, expected, strict=True)), box
        expect(region).to_be_visible()
        expect(clear).to_be_visible()
        expect(page.locator("#region-hint")).to_have_text(
            f"Searching the region {box[0]},{box[1]} – {box[2]},{box[3]} px"
        )
        expect(page.locator("#results-info")).to_contain_text("for the region")
        first = page.locator("#results a.result").first
        expect(first.locator(".meta")).to_contain_text(f"#{product}")
        drawn = region.bounding_box()  # the box is drawn over the half it stands for
        assert abs(drawn["width"] - frame["width"] / 2) <= 3
        assert abs(drawn["height"] - frame["height"]) <= 3
        shot = tmp_path / f"region-{product}.png"
        page.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 1000

    # options keep the box; "Clear box" searches the whole photo again
    with page.expect_response(is_search) as asked:
        page.check("#group")
    assert sent_box(asked.value) == box
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")
    with page.expect_response(is_search) as asked:
        clear.click()
    assert sent_box(asked.value) is None
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")
    expect(region).to_be_hidden()
    expect(clear).to_be_hidden()
    expect(page.locator("#results-info")).not_to_contain_text("for the region")
    assert page.watch.errors == [] and page.watch.dialogs == []


def test_the_box_clears_from_the_keyboard_and_a_tiny_drag_says_why(site, page, tmp_path):
    photo, left, _ = two_products_photo(site, tmp_path)
    page.goto(site.base + "/")
    upload(page, photo)
    frame = page.evaluate(PHOTO_FRAME)
    with page.expect_response(is_search):
        drag(page, frame, (0.1, 0.1), (0.45, 0.9))
    expect(page.locator("#region-clear")).to_be_visible()
    page.locator("#k").focus()
    page.keyboard.press("Tab")  # the next stop after the options is the clear control
    expect(page.locator("#region-clear")).to_be_focused()
    with page.expect_response(is_search) as asked:
        page.keyboard.press("Enter")
    assert sent_box(asked.value) is None
    expect(page.locator("#region")).to_be_hidden()
    expect(page.locator("#preview-stage")).to_be_focused()  # focus stays by the photo

    with page.expect_response(is_search):
        drag(page, frame, (0.1, 0.1), (0.45, 0.9))
    expect(page.locator("#region")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")
    with page.expect_response(is_search) as asked:
        page.keyboard.press("Escape")
    assert sent_box(asked.value) is None
    expect(page.locator("#region")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")

    searches = []
    page.on("response", lambda response: is_search(response) and searches.append(response))
    drag(page, frame, (0.2, 0.2), (0.5, 0.23))  # wide but a few pixels tall: not a box
    expect(page.locator("#region-hint")).to_have_text(
        "Drag a larger box: at least 16×16 pixels of the photo"
    )
    expect(page.locator("#region")).to_be_hidden()
    assert searches == [] and page.watch.errors == []


# -- why? ----------------------------------------------------------------------------------

# The pixel at the centre of a heatmap's hottest cell, on the panel's canvas and on the same
# photo drawn alone at the same size: the overlay must have changed it, towards heat colours.
HOTTEST_PIXEL = """async ([selector, src, frame, heatmap]) => {
  const canvas = document.querySelector(selector);
  const img = new Image();
  img.src = src;
  await img.decode();
  const plain = document.createElement("canvas");
  plain.width = canvas.width;
  plain.height = canvas.height;
  plain.getContext("2d").drawImage(img, 0, 0, plain.width, plain.height);
  let best = [0, 0], peak = -Infinity;
  heatmap.forEach((row, r) => row.forEach((v, c) => {
    if (v > peak) { peak = v; best = [r, c]; }
  }));
  const scale = canvas.width / frame.width;
  const [x0, y0, x1, y1] = frame.box;
  const x = Math.floor((x0 + (best[1] + 0.5) * (x1 - x0) / heatmap[0].length) * scale);
  const y = Math.floor((y0 + (best[0] + 0.5) * (y1 - y0) / heatmap.length) * scale);
  const pixel = (c) => Array.from(c.getContext("2d").getImageData(x, y, 1, 1).data);
  return {overlay: pixel(canvas), photo: pixel(plain), size: [canvas.width, canvas.height]};
}"""


def is_explain(response) -> bool:
    return response.url.endswith("/api/v1/explain") and response.request.method == "POST"


def assert_overlaid(page: Page, selector: str, src: str, frame: dict, heatmap: list) -> None:
    seen = page.evaluate(HOTTEST_PIXEL, [selector, src, frame, heatmap])
    overlay, photo = seen["overlay"], seen["photo"]
    assert max(seen["size"]) == 240  # the photo drawn, at the panel's size
    assert sum(abs(a - b) for a, b in zip(overlay[:3], photo[:3], strict=True)) >= 30, seen
    assert overlay[2] <= photo[2], seen  # heat colours hold no blue: blending lowers it


def test_why_shows_where_the_similarity_comes_from_on_both_photos(site, page):
    _, shots = sorted(site.catalogue.photos.items())[1]
    page.goto(site.base + "/")
    upload(page, shots[0])
    toggle = page.locator("#results .why-toggle").nth(1)
    result_image = page.locator("#results a.result").nth(1).get_attribute("data-item")
    with page.expect_response(is_explain) as answered:
        toggle.click()
    assert answered.value.status == 200
    body = answered.value.json()
    assert body["result_item_id"] == result_image
    panel = page.locator("#why")
    expect(panel).to_have_attribute("data-state", "done")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(panel.locator(".why-caption")).to_contain_text(f"score {body['score']:.3f}")
    # the panel opens right after the card whose button was pressed
    assert page.evaluate("document.getElementById('why').previousElementSibling"
                         ".contains(document.querySelectorAll('#results .why-toggle')[1])")
    query_src = page.locator("#preview-img").get_attribute("src")
    assert_overlaid(page, "#why canvas.why-query", query_src, body["query_image"],
                    body["query_heatmap"])
    assert_overlaid(page, "#why canvas.why-result", f"/api/v1/items/{result_image}/image",
                    body["result_image"], body["result_heatmap"])
    shoot(page, "why_overlays")
    toggle.click()
    expect(panel).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    assert page.watch.errors == [] and page.watch.dialogs == []


def test_why_opens_moves_and_closes_from_the_keyboard(site, page):
    _, shots = sorted(site.catalogue.photos.items())[2]
    page.goto(site.base + "/")
    upload(page, shots[0])
    first, second = (page.locator("#results .why-toggle").nth(i) for i in (0, 2))
    page.locator("#results a.result").first.focus()
    page.keyboard.press("Tab")  # the card's own Why? comes right after its link
    expect(first).to_be_focused()
    with page.expect_response(is_explain):
        page.keyboard.press("Enter")
    expect(page.locator("#why")).to_have_attribute("data-state", "done")
    expect(first).to_have_attribute("aria-expanded", "true")
    second.focus()
    with page.expect_response(is_explain):
        page.keyboard.press("Space")
    expect(page.locator("#why")).to_have_attribute("data-state", "done")
    expect(first).to_have_attribute("aria-expanded", "false")
    expect(second).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Enter")
    expect(page.locator("#why")).to_be_hidden()
    expect(second).to_have_attribute("aria-expanded", "false")
    expect(second).to_be_focused()
    assert page.watch.errors == []


# -- map -----------------------------------------------------------------------------------


def test_the_map_draws_every_point_and_a_click_searches_from_one(site, page):
    page.goto(site.base + "/map")
    expect(page.locator("body")).to_have_attribute("data-map-state", "drawn")
    total = sum(len(shots) for shots in site.catalogue.photos.values())
    expect(page.locator("#map")).to_have_attribute("data-points", str(total))
    expect(page.locator("#map-info")).to_contain_text(f"index {site.version}")
    expect(page.locator("#map-stale")).to_be_hidden()
    painted = page.evaluate(PAINTED_PIXELS)
    assert painted > total * 10  # each point is a filled disc of a few dozen pixels

    page.check("input[value=label]")
    labels = sorted(set(site.catalogue.labels.values()))
    expect(page.locator("#map-legend li")).to_have_text(labels)
    point = page.evaluate("window.lookalikeMap.clientPosition(3)")
    page.mouse.move(point["x"], point["y"])
    expect(page.locator("#map-tip")).to_be_visible()
    expect(page.locator("#map-tip-img")).to_have_attribute(
        "src", f"/api/v1/items/{point['item_id']}/thumbnail"
    )
    shoot(page, "map_hover")
    page.mouse.click(point["x"], point["y"])
    expect(page).to_have_url(f"{site.base}/?item={point['item_id']}")
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")
    expect(page.locator("#results a.result").first).to_have_attribute(
        "data-item", point["item_id"]
    )
    assert page.watch.errors == []


PAINTED_PIXELS = """() => {
  const canvas = document.getElementById('map');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
  return painted;
}"""


def test_the_map_zooms_and_pans(site, page):
    page.goto(site.base + "/map")
    expect(page.locator("body")).to_have_attribute("data-map-state", "drawn")
    before = page.evaluate("window.lookalikeMap.clientPosition(0)")
    box = page.locator("#map").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*centre)
    page.mouse.wheel(0, -400)  # zoom in around the pointer
    zoomed = page.evaluate("window.lookalikeMap.clientPosition(0)")
    assert abs(zoomed["x"] - centre[0]) > abs(before["x"] - centre[0])
    page.mouse.down()
    page.mouse.move(centre[0] + 80, centre[1] + 30, steps=5)
    page.mouse.up()
    panned = page.evaluate("window.lookalikeMap.clientPosition(0)")
    assert panned["x"] == pytest.approx(zoomed["x"] + 80, abs=1)
    assert page.url == site.base + "/map"  # a drag is not a click


def test_the_map_waits_while_it_is_computed(site, page):
    calls = []

    def pending_twice(route: Route) -> None:
        calls.append(1)
        if len(calls) <= 2:
            body = {"status": "pending", "index_version": site.version, "detail": "queued"}
            route.fulfill(status=202, content_type="application/json", body=json.dumps(body),
                          headers={"Retry-After": "1"})  # fmt: skip
        else:
            route.continue_()

    page.route("**/api/v1/map", pending_twice)
    page.goto(site.base + "/map")
    expect(page.locator("#map-info")).to_contain_text("Computing the map")
    expect(page.locator("body")).to_have_attribute("data-map-state", "drawn")
    assert len(calls) == 3


def test_a_map_older_than_the_index_says_so(site, page):
    def older(route: Route) -> None:  # the real map, as if the index had moved on since
        body = route.fetch().json()
        body.update(stale=True, current_index_version="20991231T000000.000000Z-0000")
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/api/v1/map", older)
    page.goto(site.base + "/map")
    expect(page.locator("body")).to_have_attribute("data-map-state", "drawn")
    expect(page.locator("#map-stale")).to_contain_text(
        f"Stale: this map was computed for index {site.version}; the current index is "
        "20991231T000000.000000Z-0000"
    )


# -- status ---------------------------------------------------------------------------------


def test_the_status_page_shows_a_running_job_and_its_failures(site, page, module_procs):
    release = threading.Event()
    photo = images_factory.jpeg_bytes(seed=11)

    def slow(handler) -> None:  # a byte at a time until the test has looked
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(photo)))
        handler.end_headers()
        sent = 0
        while not release.wait(0.3) and sent < len(photo) - 1:
            handler.wfile.write(photo[sent:sent + 1])
            handler.wfile.flush()
            sent += 1
        handler.wfile.write(photo[sent:])

    worker = module_procs.worker(site.setup, "--concurrency", "1", name="status-worker")
    http = urllib3.PoolManager()
    with LocalServer() as shop:
        shop.route("/slow.jpg", slow)
        urls = [shop.url("/missing.jpg"), shop.url("/slow.jpg")]
        response = http.request(
            "POST", site.base + "/api/v1/sources", body=json.dumps({"urls": urls}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
        )  # fmt: skip
        assert response.status == 202, response.data
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + WAIT
        while not (shop.hits["/slow.jpg"] and job_state(http, site, job_id)["failed"] == 1):
            assert time.monotonic() < deadline, worker.text()[-3000:]
            time.sleep(0.1)
        try:
            page.goto(site.base + "/status")
            running = page.locator(f"#active-jobs li[data-job='{job_id}']")
            expect(running).to_have_attribute("data-status", "running")
            expect(running).to_contain_text("1/2 fetched, 0 indexed, 1 failed")
            expect(running.locator("progress")).to_have_attribute("value", "1")
            failure = page.locator("#failures li", has_text="/missing.jpg")
            expect(failure).to_contain_text("404")
            expect(page.locator("#index-facts")).to_contain_text(site.version)
            expect(page.locator("#item-counts")).to_contain_text("indexed")
            shoot(page, "status_running")
        finally:
            release.set()
    assert page.watch.errors == []
    worker.kill()  # the job may finish or not: nothing else looks at it


def job_state(http: urllib3.PoolManager, site: Site, job_id: int) -> dict:
    return http.request("GET", f"{site.base}/api/v1/jobs/{job_id}").json()


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (problem(500, "the index shard 3 is corrupt"), "the index shard 3 is corrupt"),
        (problem(503, "not ready: no index version yet"), "No index yet"),
        ("abort", "Cannot reach the Lookalike API"),
    ],
    ids=["500", "503", "unreachable"],
)
def test_every_page_explains_an_api_failure(site, page, reply, message):
    def answer(route: Route) -> None:
        route.abort() if reply == "abort" else route.fulfill(**reply)

    page.route("**/api/v1/search", answer)
    page.route("**/api/v1/map", answer)
    page.route("**/api/v1/jobs?*", answer)
    _, shots = sorted(site.catalogue.photos.items())[0]
    page.goto(site.base + "/")
    page.set_input_files("#file", str(shots[0]))
    expect(page.locator("#message")).to_contain_text(message)
    expect(page.locator("#message")).to_be_visible()
    for path, state in (("/map", "data-map-state"), ("/status", "data-status-state")):
        page.goto(site.base + path)
        expect(page.locator("body")).to_have_attribute(state, "error")
        expect(page.locator("#message")).to_contain_text(message)
        shoot(page, f"error_{reply if reply == 'abort' else reply['status']}_{path[1:]}")


def test_a_read_key_and_then_a_stopped_server(keyed_server, catalogue, page):
    """The server wants a key for reads; then it is stopped under the open pages."""
    base = keyed_server.base
    _, shots = sorted(catalogue.photos.items())[1]
    page.goto(base + "/")
    page.set_input_files("#file", str(shots[0]))
    expect(page.locator("#message")).to_contain_text("The API wants a key")
    expect(page.locator("#key-input")).to_be_focused()
    shoot(page, "needs_key")
    page.fill("#key-input", KEY)
    page.press("#key-input", "Enter")  # the search runs again, with the key
    expect(page.locator("body")).to_have_attribute("data-search-state", "done")
    expect(page.locator("#message")).to_be_hidden()
    expect(page.locator("#results a.result").first.locator(".score")).to_have_text("1.000")

    status = page.context.new_page()  # the key lives in that first tab's sessionStorage only
    status.goto(base + "/status")
    expect(status.locator("#message")).to_contain_text("The API wants a key")
    map_page = page.context.new_page()
    map_page.goto(base + "/map")
    expect(map_page.locator("#message")).to_contain_text("The API wants a key")

    keyed_server.stop()  # gone under the open pages; each one acts again
    page.set_input_files("#file", str(shots[1]))
    expect(page.locator("#message")).to_contain_text("Cannot reach the Lookalike API")
    expect(status.locator("#message")).to_contain_text("Cannot reach the Lookalike API")
    map_page.click("#map-reload")
    expect(map_page.locator("#message")).to_contain_text("Cannot reach the Lookalike API")
    shoot(status, "stopped_status")
    shoot(map_page, "stopped_map")
