"""Writing PNG files chunk by chunk (ISO/IEC 15948): signature, IHDR, text, IDAT, IEND."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_UP = 2
_IHDR_END = len(SIGNATURE) + 8 + 13 + 4  # signature, IHDR length+type, 13 data bytes, CRC


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def itxt_chunks(text: dict[str, str]) -> bytes:
    """Uncompressed iTXt chunks (UTF-8 values); keywords must be 1-79 Latin-1 characters."""
    out = []
    for key, value in text.items():
        # keyword, NUL, compression flag 0, method 0, empty language tag and translated keyword.
        data = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")
        out.append(chunk(b"iTXt", data))
    return b"".join(out)


def with_text(png: bytes, text: dict[str, str]) -> bytes:
    """`png` with text chunks inserted right after its IHDR chunk (where any encoder puts it)."""
    if png[:8] != SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError("not a PNG starting with IHDR")
    return png[:_IHDR_END] + itxt_chunks(text) + png[_IHDR_END:]


def up_filtered(pixels: np.ndarray) -> np.ndarray:
    """Scanlines with filter type Up: each byte minus the byte above it (mod 256). On smooth,
    photographic images it halves the deflated size for the cost of one vectorised subtraction."""
    height = pixels.shape[0]
    rows = pixels.reshape(height, -1)
    out = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = _FILTER_UP
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out


# PNG colour types by channel count: truecolour, truecolour with alpha.
_COLOUR_TYPES = {3: 2, 4: 6}


def write_png(pixels: np.ndarray, deflate: Callable[[Any], bytes]) -> bytes:
    """An 8-bit RGB or RGBA PNG of an HxWx3 or HxWx4 uint8 array; `deflate` makes the zlib
    stream."""
    height, width, channels = pixels.shape
    if channels not in _COLOUR_TYPES or pixels.dtype != np.uint8:
        raise ValueError("expected an HxWx3 or HxWx4 uint8 array")
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    body = deflate(up_filtered(np.ascontiguousarray(pixels)).data)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
