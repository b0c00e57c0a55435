"""Client images are hostile: type by content, bombs refused before decoding, animations, corrupt
and truncated files refused with 400s; the catalog's edit rules; and image URLs fetched only from
public addresses, redirects included."""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from easel.api.images.image_urls import (
    IPAddress,
    Resolver,
    UrlPolicy,
    image_url_bytes,
    is_public_address,
    resolve_host,
)
from easel.catalog import Catalog, GenerationPlan
from easel.catalog.edit_rules import EditFields, ImageFile, closest_size, edit_plan
from easel.errors import InvalidRequestError
from easel.images.inputs import ImageLimits, decode_image, sniff_format
from tests.edit_images import animated, data_url, declared_png, encode, mask_png, png

ANY_FORMAT = ImageLimits(formats=("png", "jpeg", "webp"), max_bytes=50 * 1024 * 1024)


def refusal(data: bytes, limits: ImageLimits = ANY_FORMAT) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        decode_image(data, "image", limits)
    assert caught.value.status_code == 400
    assert caught.value.param == "image"
    return caught.value


def test_type_is_read_from_content_not_name() -> None:
    jpeg = encode(Image.new("RGB", (32, 16), (10, 200, 10)), "JPEG")
    webp = encode(Image.new("RGB", (32, 16), (10, 200, 10)), "WEBP")
    assert [sniff_format(data) for data in (png(8, 8), jpeg, webp)] == ["png", "jpeg", "webp"]
    decoded = decode_image(jpeg, "image", ANY_FORMAT)
    assert (decoded.format, decoded.width, decoded.height) == ("jpeg", 32, 16)
    assert decoded.rgb.shape == (16, 32, 3) and decoded.alpha is None
    # A JPEG where only PNG is taken is refused by what it is.
    assert refusal(jpeg, ImageLimits(("png",), 4 * 1024 * 1024)).code == "invalid_image_format"
    for not_an_image in (b"", b"GIF89a" + b"\x00" * 64, b"%PDF-1.7\n", b"hello world"):
        assert refusal(not_an_image).code == "invalid_image_format"


def test_a_photo_turned_by_exif_is_read_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    sideways = encode(Image.new("RGB", (40, 20), (5, 5, 5)), "JPEG", exif=exif.tobytes())
    decoded = decode_image(sideways, "image", ANY_FORMAT)
    assert (decoded.width, decoded.height) == (20, 40)


def test_alpha_is_kept_for_masks() -> None:
    decoded = decode_image(mask_png(16, 16, (0, 0, 8, 16)), "mask", ANY_FORMAT)
    assert decoded.alpha is not None
    assert (decoded.alpha[:, :8] == 0).all() and (decoded.alpha[:, 8:] == 255).all()


def test_a_small_png_declaring_50000_squared_is_refused_before_any_pixel_buffer() -> None:
    bomb = declared_png(50_000, 50_000)
    assert len(bomb) < 1000
    tracemalloc.start()
    try:
        error = refusal(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "image_too_large"
    # 50,000^2 RGB pixels would take 7.5 GB; the refusal took under a megabyte.
    assert peak < 1024 * 1024


@pytest.mark.parametrize("size", [(20_000, 100), (7_000, 7_000)])
def test_dimensions_over_the_servers_limits_are_refused_by_the_header(
    size: tuple[int, int],
) -> None:
    # Under Pillow's own bomb threshold, so Easel's limit is what refuses them.
    error = refusal(declared_png(*size))
    assert error.code == "image_too_large"
    assert f"{size[0]}x{size[1]}" in error.message


@pytest.mark.parametrize("image_format", ["PNG", "WEBP"])
def test_animations_are_refused(image_format: str) -> None:
    error = refusal(animated(image_format))
    assert error.code == "invalid_image" and "animated (2 frames)" in error.message


def test_an_animated_gif_is_not_a_format_edits_take() -> None:
    assert refusal(animated("GIF")).code == "invalid_image_format"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_truncated_and_corrupt_files_are_400s(image_format: str) -> None:
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    whole = encode(Image.fromarray(noise), image_format)
    truncated = whole[: len(whole) // 2]
    assert refusal(truncated).code == "invalid_image"
    # The right magic bytes, then garbage.
    corrupt = whole[:16] + bytes(reversed(whole[16:]))
    assert refusal(corrupt).code == "invalid_image"


def test_files_over_the_byte_limit_are_refused_unread() -> None:
    error = refusal(png(64, 64), ImageLimits(("png",), max_bytes=100))
    assert error.code == "image_too_large"


# The catalog's edit rules, on the built-in entries (no pipeline runs).
CATALOG = Catalog.build()


def plan_of(
    model: str,
    images: list[bytes],
    mask: bytes | None = None,
    size: str | None = None,
    input_fidelity: str | None = None,
) -> GenerationPlan:
    return edit_plan(
        CATALOG.get(model),
        EditFields(prompt="a hat", size=size, input_fidelity=input_fidelity),
        [ImageFile("image", data) for data in images],
        ImageFile("mask", mask) if mask is not None else None,
    )


def rule_refusal(
    model: str, images: list[bytes], mask: bytes | None = None, input_fidelity: str | None = None
) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        plan_of(model, images, mask, input_fidelity=input_fidelity)
    return caught.value


def test_a_mask_marks_its_fully_transparent_pixels_for_repainting() -> None:
    plan = plan_of("dall-e-2", [png(64, 64)], mask_png(64, 64, (0, 0, 16, 64)), size="256x256")
    assert plan.edit is not None and plan.edit.mask is not None
    assert plan.edit.mask.dtype == bool and plan.edit.mask.shape == (64, 64)
    assert plan.edit.mask[:, :16].all() and not plan.edit.mask[:, 16:].any()
    assert plan.edit.images[0].shape == (64, 64, 3)
    # dall-e-2 gives back the unmasked pixels; GPT names redraw the whole image.
    assert plan.edit.keep_unmasked
    gpt = plan_of("gpt-image-1", [png(64, 64)], mask_png(64, 64, (0, 0, 16, 64)))
    assert gpt.edit is not None and not gpt.edit.keep_unmasked


def test_dall_e_2_without_a_mask_edits_the_images_transparent_pixels() -> None:
    image = Image.new("RGBA", (32, 32), (9, 9, 9, 255))
    image.paste((0, 0, 0, 0), (0, 0, 32, 8))
    plan = plan_of("dall-e-2", [encode(image, "PNG")])
    assert plan.edit is not None and plan.edit.mask is not None
    assert plan.edit.mask[:8].all() and not plan.edit.mask[8:].any()


def test_mask_refusals() -> None:
    error = rule_refusal("gpt-image-1", [png(64, 64)], png(64, 64))
    assert (error.param, error.code) == ("mask", "invalid_image_format")
    assert "missing alpha channel" in error.message
    error = rule_refusal("gpt-image-1", [png(64, 64)], mask_png(32, 32, (0, 0, 4, 4)))
    assert (error.param, error.code) == ("mask", "invalid_image_dimensions")
    assert "32x32" in error.message and "64x64" in error.message
    jpeg_mask = encode(Image.new("RGB", (64, 64)), "JPEG")
    assert rule_refusal("gpt-image-1", [png(64, 64)], jpeg_mask).code == "invalid_image_format"


def test_dall_e_2_takes_one_square_png_under_4_mb() -> None:
    assert rule_refusal("dall-e-2", [png(64, 32)]).code == "invalid_image"
    webp = encode(Image.new("RGB", (64, 64)), "WEBP")
    assert rule_refusal("dall-e-2", [webp]).code == "invalid_image_format"
    error = rule_refusal("dall-e-2", [png(64, 64), png(64, 64)])
    assert error.code == "array_above_max_length" and "maximum length 1" in error.message
    big = png(1, 1) + b"\x00" * (4 * 1024 * 1024)
    assert rule_refusal("dall-e-2", [big]).code == "image_too_large"


def test_dall_e_3_has_no_edits() -> None:
    error = rule_refusal("dall-e-3", [png(64, 64)])
    assert (error.param, error.code) == ("model", "invalid_value")


def test_several_images_need_a_multi_reference_pipeline(tiny_sdxl: Path) -> None:
    # The GPT names take 16 images by OpenAI's rule, but on SDXL (no multi-reference editing)
    # the refusal names the one image the server can honour.
    spec = CATALOG.get("gpt-image-1").model_copy(update={"source": str(tiny_sdxl)})
    with pytest.raises(InvalidRequestError) as caught:
        edit_plan(spec, EditFields(prompt="x"), [ImageFile("image", png(8, 8))] * 2, None)
    assert caught.value.code == "array_above_max_length"
    assert "takes 1 image" in caught.value.message and "got 2" in caught.value.message
    error = rule_refusal("gpt-image-1", [png(8, 8)] * 17)
    assert "maximum length 16" in error.message


def test_several_images_go_to_a_multi_reference_family(tiny_flux2_klein: Path) -> None:
    spec = CATALOG.get("gpt-image-1").model_copy(update={"source": str(tiny_flux2_klein)})
    plan = edit_plan(spec, EditFields(prompt="x"), [ImageFile("image", png(8, 8))] * 3, None)
    assert plan.edit is not None and len(plan.edit.images) == 3


def test_input_fidelity_moves_strength_and_is_refused_where_openai_refuses_it() -> None:
    spec = CATALOG.get("gpt-image-1.5")
    low = plan_of("gpt-image-1.5", [png(8, 8)], input_fidelity="low")
    high = plan_of("gpt-image-1.5", [png(8, 8)], input_fidelity="high")
    assert low.edit is not None and high.edit is not None
    assert low.edit.strength == spec.edit_strength
    assert high.edit.strength == spec.high_fidelity_strength < low.edit.strength
    for model in ("gpt-image-1-mini", "dall-e-2"):
        error = rule_refusal(model, [png(8, 8)], input_fidelity="high")
        assert (error.param, error.code) == ("input_fidelity", "unsupported_parameter")
    assert rule_refusal("gpt-image-1", [png(8, 8)], input_fidelity="max").code == "invalid_value"


def test_size_auto_keeps_the_first_images_aspect() -> None:
    sizes = CATALOG.get("gpt-image-1").sizes
    assert closest_size(sizes, 1200, 800) == "1536x1024"
    assert closest_size(sizes, 600, 900) == "1024x1536"
    assert closest_size(sizes, 500, 510) == "1024x1024"
    plan = plan_of("gpt-image-1", [png(90, 60)], size="auto")
    assert (plan.width, plan.height) == (1536, 1024)


# Image URLs: fetched from public addresses only, checked where the connection goes.


class _Recorder(BaseHTTPRequestHandler):
    """Serves a PNG, or a redirect at /redirect?to=URL; records each request's path."""

    requests: list[str]
    image = png(16, 16)

    def do_GET(self) -> None:  # http.server's hook
        type(self).requests.append(self.path)
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect?to="))
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)

    def log_message(self, *_args: object) -> None:
        return None


@contextlib.contextmanager
def http_server(host: str) -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server on `host` and its request log."""
    requests: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), requests
    finally:
        server.shutdown()
        server.server_close()


def policy(
    resolve: Resolver = resolve_host, allowed: Callable[[IPAddress], bool] = is_public_address
) -> UrlPolicy:
    return UrlPolicy(max_bytes=1024 * 1024, timeout_seconds=5.0, resolve=resolve, allowed=allowed)


async def url_refusal(url: str, url_policy: UrlPolicy | None) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        await image_url_bytes(url, "images[0].image_url", url_policy)
    assert caught.value.status_code == 400 and caught.value.param == "images[0].image_url"
    return caught.value


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::1",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


def test_public_addresses_are_allowed() -> None:
    for address in ("93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"):
        assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.anyio
async def test_loopback_urls_are_refused_without_a_connection() -> None:
    with http_server("127.0.0.1") as (port, requests):
        for host in ("127.0.0.1", "localhost", "127.1"):
            error = await url_refusal(f"http://{host}:{port}/image.png", policy())
            assert error.code == "invalid_image_url" and "not a public address" in error.message
        assert requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url", ["http://10.0.0.7/x.png", "http://169.254.169.254/latest/meta-data", "http://[::1]/x"]
)
async def test_private_link_local_and_ipv6_loopback_urls_are_refused(url: str) -> None:
    assert "not a public address" in (await url_refusal(url, policy())).message


@pytest.mark.anyio
async def test_a_public_name_resolving_to_loopback_is_refused_by_its_address() -> None:
    # Fault injection on DNS: a public-looking name whose (attacker's) DNS answers 127.0.0.1.
    async def rebinding(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    with http_server("127.0.0.1") as (port, requests):
        error = await url_refusal(f"http://images.example.com:{port}/image.png", policy(rebinding))
        assert "127.0.0.1" in error.message
        assert requests == []


@pytest.mark.anyio
async def test_a_redirect_into_loopback_is_refused_on_the_next_hop() -> None:
    # The first server stands in for a public host: the address rule lets 127.0.0.2 through
    # (fault injection: no test can bind a public address). It redirects into 127.0.0.1.
    def public_or_first_hop(address: IPAddress) -> bool:
        return address == ipaddress.ip_address("127.0.0.2") or is_public_address(address)

    with (
        http_server("127.0.0.2") as (public_port, public_requests),
        http_server("127.0.0.1") as (inner_port, inner_requests),
    ):
        inner = f"http://127.0.0.1:{inner_port}/image.png"
        allowed = policy(allowed=public_or_first_hop)
        # The stand-in serves its own image...
        fetched = await image_url_bytes(
            f"http://127.0.0.2:{public_port}/image.png", "images[0].image_url", allowed
        )
        assert fetched == _Recorder.image
        # ...but its redirect into loopback is refused before connecting there.
        error = await url_refusal(f"http://127.0.0.2:{public_port}/redirect?to={inner}", allowed)
        assert "127.0.0.1" in error.message
        assert public_requests == ["/image.png", f"/redirect?to={inner}"]
        assert inner_requests == []


@pytest.mark.anyio
async def test_url_fetching_is_off_by_default_and_data_urls_always_work() -> None:
    error = await url_refusal("https://example.com/cat.png", None)
    assert "does not fetch image URLs" in error.message
    assert await image_url_bytes(data_url(b"\x89PNG"), "images[0].image_url", None) == b"\x89PNG"
    for bad in ("data:image/png;base64,@@@", "data:image/png,rawtext", "ftp://example.com/x.png"):
        assert (await url_refusal(bad, None)).code == "invalid_image_url"


@pytest.mark.anyio
async def test_fetched_images_over_the_limit_are_refused() -> None:
    def loopback_allowed(address: IPAddress) -> bool:  # fault injection: a local "public" host
        return address.is_loopback

    with http_server("127.0.0.1") as (port, _):
        small = UrlPolicy(
            max_bytes=10, timeout_seconds=5.0, resolve=resolve_host, allowed=loopback_allowed
        )
        error = await url_refusal(f"http://127.0.0.1:{port}/image.png", small)
        assert error.code == "image_too_large"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_damaged_files_only_ever_get_400s(image_format: str) -> None:
    # Random byte damage past the magic bytes: whatever the decoder trips on is the client's file.
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    whole = bytearray(encode(Image.fromarray(noise), image_format))
    for _ in range(150):
        damaged = bytearray(whole)
        for position in rng.integers(12, len(damaged), size=int(rng.integers(1, 8))):
            damaged[position] = int(rng.integers(0, 256))
        # Decoded, or refused with a 400; any other exception fails the test.
        with contextlib.suppress(InvalidRequestError):
            decode_image(bytes(damaged), "image", ANY_FORMAT)
