"""The web playground at `/`, driven in Debian's headless Chromium through Playwright."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    FilePayload,
    Page,
    Request,
    expect,
    sync_playwright,
)

from tests.edit_images import png
from tests.server import RunningServer
from tests.system_programs import require_program

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A prompt that would run script if the page ever inserted text as HTML.
HOSTILE_PROMPT = '<img src=x onerror="document.body.dataset.pwned=1"> a red fox & <b>friends</b>'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = require_program(CHROMIUM, f"Debian's chromium not found at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Browser, server: RunningServer, **context: Any) -> tuple[Page, list[str]]:
    page = browser.new_context(**context).new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A refused status is logged by Chromium as a failed resource; everything else is a fault.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(server.base_url + "/")
    return page, problems


def option_values(page: Page, select_id: str) -> list[str]:
    values: list[str] = page.locator(f"#{select_id} option").evaluate_all(
        "(options) => options.map(o => o.value)"
    )
    return values


def png_file(name: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": "image/png", "buffer": data}


def natural_size(page: Page, selector: str) -> tuple[int, int]:
    width, height = page.locator(selector).evaluate(
        "(img) => [img.naturalWidth, img.naturalHeight]"
    )
    return int(width), int(height)


def test_page_is_served_with_a_strict_content_security_policy(server: RunningServer) -> None:
    response = httpx.get(server.base_url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        asset_response = httpx.get(f"{server.base_url}/static/{asset}")
        assert asset_response.status_code == 200 and kind in asset_response.headers["content-type"]


@pytest.mark.browser
def test_playground_generates_shows_errors_and_keeps_history(
    browser: Browser, server: RunningServer, api_key: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page, problems = open_page(browser, server, viewport={"width": 1360, "height": 900})

    # No key yet: the page asks for one, then reads the models with it.
    expect(page.locator("#key-panel")).to_be_visible()
    page.fill("#api-key", api_key)
    page.click("#save-key")
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#model option[value='dall-e-3']")).to_have_count(1)

    # The controls offer only what the chosen model accepts, as the server describes it.
    page.select_option("#model", "dall-e-3")
    assert option_values(page, "size") == ["1024x1024", "1792x1024", "1024x1792"]
    assert option_values(page, "quality") == ["standard", "hd"]
    assert option_values(page, "style") == ["vivid", "natural"]
    expect(page.locator("#style-field")).to_be_visible()
    expect(page.locator("#n")).to_be_disabled()
    page.select_option("#model", "dall-e-2")
    assert option_values(page, "size") == ["256x256", "512x512", "1024x1024"]
    assert option_values(page, "quality") == ["standard"]
    expect(page.locator("#style-field")).to_be_hidden()
    expect(page.locator("#n")).to_be_enabled()

    # dall-e-3 at 1792x1024: the running state shows while the request is in flight.
    page.select_option("#model", "dall-e-3")
    page.select_option("#size", "1792x1024")
    page.fill("#prompt", "a lighthouse at dawn")
    page.click("#generate")
    expect(page.locator("body")).to_have_class(re.compile(r"\brunning\b"))
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#status")).to_contain_text("Generating dall-e-3")
    page.screenshot(path=str(ARTIFACTS / "playground-running.png"))
    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)
    expect(page.locator("body")).not_to_have_class(re.compile(r"\brunning\b"))
    expect_images_shown(page)
    assert natural_size(page, "#results img") == (1792, 1024)
    expect(page.locator("#results .revised")).to_contain_text("a lighthouse at dawn")
    expect(page.locator("#results .seed")).to_have_text(re.compile(r"^seed \d+$"))
    expect(page.locator("#results .took")).to_have_text(re.compile(r"^\d+\.\d s$"))
    download = page.locator("#results a", has_text="Download")
    assert re.fullmatch(r"easel-dall-e-3-\d+\.png", download.get_attribute("download") or "")
    assert "/files/images/" in (download.get_attribute("href") or "")

    # dall-e-2, two images from seed 1234 as base64: image i carries seed 1234 + i.
    page.select_option("#model", "dall-e-2")
    page.select_option("#size", "256x256")
    page.select_option("#response-format", "b64_json")
    page.fill("#n", "2")
    page.fill("#seed", "1234")
    page.fill("#prompt", HOSTILE_PROMPT)
    page.click("#generate")
    expect(page.locator("#results figure.card img")).to_have_count(2, timeout=120_000)
    expect(page.locator("#results .seed")).to_have_text(["seed 1234", "seed 1235"])
    expect_images_shown(page)
    assert natural_size(page, "#results img >> nth=1") == (256, 256)
    assert (page.locator("#results a >> nth=0").get_attribute("href") or "").startswith(
        "data:image/png;base64,"
    )

    # History: newest first, restorable, kept across a reload; text from users stays text.
    expect(page.locator("#history li")).to_have_count(2)
    expect(page.locator(".history-prompt").first).to_have_text(HOSTILE_PROMPT)
    page.screenshot(path=str(ARTIFACTS / "playground-desktop.png"), full_page=True)
    page.reload()
    expect(page.locator("#history li")).to_have_count(2)
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#model option[value='dall-e-2']")).to_have_count(1)
    page.locator(".history-item").nth(1).click()
    expect(page.locator("#prompt")).to_have_value("a lighthouse at dawn")
    expect(page.locator("#model")).to_have_value("dall-e-3")
    expect(page.locator("#size")).to_have_value("1792x1024")
    assert page.locator("img[src='x']").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None

    # A value the server refuses: its envelope is shown, naming the parameter.
    page.locator(".history-item").nth(0).click()
    page.fill("#seed", "-1")
    page.click("#generate")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-title")).to_have_text("Invalid seed")
    expect(page.locator("#error-message")).to_have_text("-1 is less than the minimum of 0 - 'seed'")
    expect(page.locator("#error-detail")).to_contain_text("HTTP 400")

    # A wrong key: 401, said plainly, and the key form opens again.
    page.click("#key-toggle")
    page.fill("#api-key", "sk-thisIsNotARealKeyAtAll0123456789wxyz")
    page.click("#save-key")
    expect(page.locator("#error-title")).to_have_text("API key rejected")
    expect(page.locator("#error-message")).to_contain_text("Incorrect API key provided: sk-th")
    expect(page.locator("#key-panel")).to_be_visible()
    page.fill("#seed", "")
    page.click("#generate")
    expect(page.locator("#error-title")).to_have_text("API key rejected")
    page.screenshot(path=str(ARTIFACTS / "playground-error.png"), full_page=True)
    assert problems == []


@pytest.mark.browser
def test_playground_works_on_a_phone(browser: Browser, server: RunningServer, api_key: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page, problems = open_page(
        browser, server, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page.fill("#api-key", api_key)
    page.click("#save-key")
    expect(page.locator("#model option[value='dall-e-2']")).to_have_count(1)
    page.select_option("#size", "512x512")
    page.fill("#prompt", "a paper boat on a pond")
    page.click("#generate")
    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)
    expect_images_shown(page)
    assert natural_size(page, "#results img") == (512, 512)
    # Nothing wider than the screen: the layout is one column.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "playground-phone.png"), full_page=True)

    # The Edit tab fits too, and a tap paints the mask where the finger is.
    page.click("#tab-edit")
    page.set_input_files(
        "#edit-images",
        files=[png_file("photo.png", png(512, 512))],
    )
    expect(page.locator("#mask-editor")).to_be_visible()
    canvas = page.locator("#mask-canvas")
    canvas.evaluate("(canvas) => canvas.scrollIntoView({ block: 'center' })")
    box = canvas.bounding_box()
    assert box is not None
    page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    painted = canvas.evaluate(
        """(canvas) => [0, 256].map(
          (at) => canvas.getContext('2d').getImageData(at, 256, 1, 1).data[3])"""
    )
    assert painted == [0, 255]
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "playground-phone-edit.png"), full_page=True)
    assert problems == []


def expect_images_shown(page: Page) -> None:
    """Every result image has loaded and decoded. Polled through locators, not `wait_for_function`:
    its polling evaluates a string in the page, which the playground's CSP (no 'unsafe-eval')
    refuses whenever the first check fails."""
    images = page.locator("#results img")
    expect(images.first).to_be_attached()
    for image in images.all():
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("image => image.naturalWidth") > 0


def signed_in(browser: Browser, server: RunningServer, api_key: str) -> tuple[Page, list[str]]:
    page, problems = open_page(browser, server, viewport={"width": 1360, "height": 900})
    page.fill("#api-key", api_key)
    page.click("#save-key")
    expect(page.locator("#model option[value='gpt-image-1']")).to_have_count(1)
    return page, problems


@pytest.mark.browser
def test_playground_offers_the_gpt_output_controls(
    browser: Browser, server: RunningServer, api_key: str
) -> None:
    page, problems = signed_in(browser, server, api_key)
    # dall-e models: no GPT controls.
    page.select_option("#model", "dall-e-2")
    expect(page.locator("#output-format")).to_be_hidden()
    expect(page.locator("#background")).to_be_hidden()

    page.select_option("#model", "gpt-image-1")
    expect(page.locator("#response-format")).to_be_hidden()
    assert option_values(page, "quality") == ["low", "medium", "high"]
    assert option_values(page, "output-format") == ["png", "jpeg", "webp"]
    assert option_values(page, "background") == ["transparent", "opaque", "auto"]
    # Compression is for jpeg and webp; a transparent jpeg cannot be asked for.
    expect(page.locator("#output-compression")).to_be_hidden()
    page.select_option("#output-format", "jpeg")
    expect(page.locator("#output-compression")).to_be_visible()
    expect(page.locator("#background option[value='transparent']")).to_be_disabled()

    page.select_option("#output-format", "webp")
    page.select_option("#quality", "low")
    page.select_option("#background", "opaque")
    page.fill("#output-compression", "50")
    page.fill("#prompt", "a kite over the dunes")
    with page.expect_request("**/v1/images/generations") as sent:
        page.click("#generate")
    assert sent.value.post_data_json == {
        "model": "gpt-image-1",
        "prompt": "a kite over the dunes",
        "size": "1024x1024",
        "quality": "low",
        "n": 1,
        "output_format": "webp",
        "background": "opaque",
        "output_compression": 50,
    }
    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)
    expect_images_shown(page)
    assert natural_size(page, "#results img") == (1024, 1024)
    download = page.locator("#results a", has_text="Download")
    assert (download.get_attribute("href") or "").startswith("data:image/webp;base64,")
    assert (download.get_attribute("download") or "").endswith(".webp")
    assert problems == []


def watch_previews(page: Page) -> None:
    """Records in `window.previewsSeen` the index of each partial image the page shows: previews
    are replaced by the final image once it arrives."""
    page.evaluate(
        """() => {
        window.previewsSeen = [];
        new MutationObserver(() => {
          for (const img of document.querySelectorAll('#results img[data-partial-index]')) {
            if (!window.previewsSeen.includes(img.dataset.partialIndex)) {
              window.previewsSeen.push(img.dataset.partialIndex);
            }
          }
        }).observe(document.querySelector('#results'), { childList: true, subtree: true });
        }"""
    )


@pytest.mark.browser
def test_playground_streams_partial_images_as_they_arrive(
    browser: Browser, server: RunningServer, api_key: str
) -> None:
    """Needs the server side of streaming (OpenAI's image_generation.* events)."""
    page, problems = signed_in(browser, server, api_key)
    page.select_option("#model", "gpt-image-1")
    # Enough steps for two previews whichever built-in steps this machine's catalog has (on a
    # CPU, SD-Turbo's: medium is 2 steps, room for one preview).
    page.select_option("#quality", "high")
    expect(page.locator("#stream")).to_be_visible()
    page.check("#stream")
    page.select_option("#partial-images", "2")
    page.fill("#prompt", "a lantern in the fog")
    watch_previews(page)
    with page.expect_request("**/v1/images/generations") as sent:
        page.click("#generate")
    body = sent.value.post_data_json
    assert body is not None and (body["stream"], body["partial_images"]) == (True, 2)
    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)
    assert page.evaluate("window.previewsSeen") == ["0", "1"]
    expect_images_shown(page)
    assert natural_size(page, "#results img") == (1024, 1024)
    assert problems == []


def record_forms(page: Page) -> None:
    """Wraps the page's fetch to keep each multipart form it sends: Chromium leaves the file
    parts out of the request body that Playwright reports."""
    page.evaluate(
        """() => {
        window.sentForms = [];
        const send = window.fetch;
        window.fetch = async (url, init = {}) => {
          if (init.body instanceof FormData) {
            const fields = {};
            for (const [name, value] of init.body.entries()) {
              if (typeof value === "string") { fields[name] = value; continue; }
              const bytes = new Uint8Array(await value.arrayBuffer());
              let binary = "";
              for (const byte of bytes) binary += String.fromCharCode(byte);
              fields[name] = { file: value.name, base64: btoa(binary) };
            }
            window.sentForms.push(fields);
          }
          return send(url, init);
        };
        }"""
    )


def sent_form(page: Page, request: Request) -> dict[str, str | bytes]:
    """The fields of the last form the page sent, files as bytes; `request` is its request."""
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    fields: dict[str, Any] = page.evaluate("window.sentForms[window.sentForms.length - 1]")
    return {
        name: value if isinstance(value, str) else base64.b64decode(value["base64"])
        for name, value in fields.items()
    }


def drop_image(page: Page, name: str, data: bytes) -> None:
    """Drops a file on the Edit tab's drop zone as a drag from the desktop would."""
    page.locator("#drop-zone").evaluate(
        """(zone, [name, encoded]) => {
        const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/png" }));
        const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
        zone.dispatchEvent(new DragEvent("drop", init));
        }""",
        [name, base64.b64encode(data).decode()],
    )


def stroke(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drags the mouse over the mask canvas between two points given as fractions of its box."""
    # Whole in view, clear of the sticky top bar: the mouse only reaches what is on screen.
    page.locator("#mask-canvas").evaluate("(canvas) => canvas.scrollIntoView({ block: 'center' })")
    box = page.locator("#mask-canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * start[0], box["y"] + box["height"] * start[1])
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end[0], box["y"] + box["height"] * end[1], steps=8)
    page.mouse.up()


@pytest.mark.browser
def test_playground_edits_an_image_under_a_painted_mask(
    browser: Browser, server: RunningServer, api_key: str
) -> None:
    page, problems = signed_in(browser, server, api_key)
    record_forms(page)
    page.click("#tab-edit")
    expect(page.locator("#tab-edit")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#generate-label")).to_have_text("Edit")
    page.select_option("#model", "dall-e-2")
    page.select_option("#size", "256x256")
    page.select_option("#response-format", "b64_json")
    photo = png(256, 256, (30, 90, 200))
    page.set_input_files("#edit-images", files=[png_file("photo.png", photo)])
    expect(page.locator("#mask-editor")).to_be_visible()

    # A horizontal stroke across the middle of the image, 40 screen pixels wide.
    stroke(page, (0.25, 0.5), (0.75, 0.5))

    page.fill("#prompt", "a red balloon")
    with page.expect_request("**/v1/images/edits") as sent:
        page.click("#generate")
    parts = sent_form(page, sent.value)
    assert parts["image"] == photo
    assert {name: parts[name] for name in ("model", "prompt", "size", "response_format")} == {
        "model": "dall-e-2",
        "prompt": "a red balloon",
        "size": "256x256",
        "response_format": "b64_json",
    }
    # OpenAI's mask: the image's size, alpha 0 where painted and 255 everywhere else.
    assert isinstance(parts["mask"], bytes)
    mask = Image.open(io.BytesIO(parts["mask"]))
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", (256, 256))
    alpha = mask.getchannel("A")
    assert [alpha.getpixel((x, 128)) for x in (70, 128, 186)] == [0, 0, 0]
    assert [alpha.getpixel(xy) for xy in ((5, 5), (128, 20), (128, 236), (250, 128))] == [255] * 4

    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)
    expect_images_shown(page)
    assert natural_size(page, "#results img") == (256, 256)
    page.screenshot(path=str(ARTIFACTS / "playground-edit.png"), full_page=True)

    # Erasing across the stroke's middle gives that part of the image back.
    page.check("#mask-erase")
    stroke(page, (0.5, 0.2), (0.5, 0.8))
    with page.expect_request("**/v1/images/edits") as sent:
        page.click("#generate")
    erased = sent_form(page, sent.value)["mask"]
    assert isinstance(erased, bytes)
    alpha = Image.open(io.BytesIO(erased)).getchannel("A")
    assert [alpha.getpixel((x, 128)) for x in (70, 128, 186)] == [0, 255, 0]
    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)

    # Cleared, the mask is not sent: the whole image is edited.
    page.click("#mask-clear")
    with page.expect_request("**/v1/images/edits") as sent:
        page.click("#generate")
    assert "mask" not in sent_form(page, sent.value)
    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)
    assert problems == []


@pytest.mark.browser
def test_playground_edit_tab_offers_only_models_that_edit(
    browser: Browser, server: RunningServer, api_key: str
) -> None:
    page, problems = signed_in(browser, server, api_key)
    page.select_option("#model", "dall-e-3")
    page.click("#tab-edit")
    # dall-e-3 takes no edits: the tab leaves it out, and the chosen model moves to one that does.
    edit_models = option_values(page, "model")
    assert "dall-e-3" not in edit_models
    assert {"dall-e-2", "gpt-image-1"} <= set(edit_models)
    assert page.locator("#model").input_value() in edit_models
    # Variations are offered for the models that make them (dall-e-2) only.
    page.select_option("#model", "dall-e-2")
    expect(page.locator("#variations")).to_be_visible()
    page.select_option("#model", "gpt-image-1")
    expect(page.locator("#variations")).to_be_hidden()
    # Back on the Generate tab, every model is offered again.
    page.click("#tab-generate")
    assert "dall-e-3" in option_values(page, "model")
    expect(page.locator("#model")).to_have_value("gpt-image-1")
    expect(page.locator("#variations")).to_be_hidden()
    assert problems == []


@pytest.mark.browser
def test_playground_makes_variations_and_shows_their_refusals(
    browser: Browser, server: RunningServer, api_key: str
) -> None:
    page, problems = signed_in(browser, server, api_key)
    record_forms(page)
    page.click("#tab-edit")
    page.select_option("#model", "dall-e-2")
    page.select_option("#size", "256x256")
    page.fill("#n", "2")
    drop_image(page, "square.png", png(128, 128))
    expect(page.locator("#edit-files")).to_have_text("square.png")
    with page.expect_request("**/v1/images/variations") as sent:
        page.click("#variations")
    parts = sent_form(page, sent.value)
    assert parts.keys() == {"model", "size", "n", "response_format", "image"}
    assert (parts["n"], parts["image"]) == ("2", png(128, 128))
    expect(page.locator("#results figure.card img")).to_have_count(2, timeout=120_000)
    expect_images_shown(page)
    assert natural_size(page, "#results img >> nth=1") == (256, 256)

    # dall-e-2 varies square images only: the server's envelope is shown, the results stay.
    drop_image(page, "wide.png", png(64, 32))
    page.click("#variations")
    # A server round trip: on a busy machine it can outlast the 5 s default.
    expect(page.locator("#error")).to_be_visible(timeout=60_000)
    expect(page.locator("#error-title")).to_have_text("Invalid image")
    expect(page.locator("#error-message")).to_have_text(
        "Invalid input image - image must be square, got 64x32."
    )
    expect(page.locator("#error-detail")).to_contain_text("HTTP 400")
    expect(page.locator("#results figure.card img")).to_have_count(2)
    assert problems == []


@pytest.mark.browser
def test_playground_streams_an_edit(browser: Browser, server: RunningServer, api_key: str) -> None:
    page, problems = signed_in(browser, server, api_key)
    record_forms(page)
    page.click("#tab-edit")
    page.select_option("#model", "gpt-image-1")
    page.select_option("#quality", "high")  # steps for two previews, as above
    page.check("#stream")
    page.select_option("#partial-images", "2")
    page.set_input_files(
        "#edit-images",
        files=[png_file("photo.png", png(64, 64))],
    )
    page.fill("#prompt", "paint it blue")
    watch_previews(page)
    with page.expect_request("**/v1/images/edits") as sent:
        page.click("#generate")
    parts = sent_form(page, sent.value)
    assert (parts["stream"], parts["partial_images"], parts["model"]) == (
        "true",
        "2",
        "gpt-image-1",
    )
    assert "mask" not in parts
    expect(page.locator("#results figure.card img")).to_have_count(1, timeout=120_000)
    assert page.evaluate("window.previewsSeen") == ["0", "1"]
    expect_images_shown(page)
    assert natural_size(page, "#results img") == (1024, 1024)
    assert problems == []
