"""Image files for edit and variation tests, well-formed and hostile, made in memory."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image


def png(width: int, height: int, color: tuple[int, ...] = (200, 40, 40)) -> bytes:
    """A solid PNG; a 4-value colour makes an RGBA one."""
    mode = "RGBA" if len(color) == 4 else "RGB"
    return encode(Image.new(mode, (width, height), color), "PNG")


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def mask_png(width: int, height: int, hole: tuple[int, int, int, int]) -> bytes:
    """An opaque RGBA mask with the box `hole` (left, top, right, bottom) fully transparent."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), hole)
    return encode(mask, "PNG")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def declared_png(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares width x height RGB
    pixels: a decompression bomb when they are many."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # One scanline's worth of compressed zeros: a decoder would inflate far more before failing.
    data = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def animated(image_format: str) -> bytes:
    """A two-frame animation: GIF, APNG ("PNG") or WebP."""
    frames = [Image.new("RGB", (64, 64), color) for color in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=100)


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
