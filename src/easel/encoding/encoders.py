"""Every PNG encoder Easel knows, fastest first; the first one installed encodes served images.

fpng and the ISA-L writer encode a 1024x1024 image in under 15 ms on one core; Pillow and OpenCV
at their fastest useful levels take 30-120 ms (`easel bench`, bench/results/). Encoding as served
(on a pool thread), fpng took half the ISA-L writer's time on a 2-core AMD EPYC (1024x1024: 3.1-3.3
against 6.9-11.6 ms; 512x512: 0.75 against 1.75 ms, smooth gradients with noise) for PNGs 9-16%
larger, so it comes first where it has a wheel (x86-64) and the ISA-L writer serves elsewhere.
Each returns a standard 8-bit RGB or RGBA PNG of the pixels (HxWx3 or HxWx4, as given); text
chunks are added by `encode_png`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from easel.encoding.chunks import with_text, write_png

Encoder = Callable[[np.ndarray], bytes]


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    description: str
    load: Callable[[], Encoder]  # raises ImportError when the library is not installed


def _fpng() -> Encoder:
    import fpng_py

    def encode(pixels: np.ndarray) -> bytes:
        height, width, channels = pixels.shape
        return bytes(
            fpng_py.fpng_encode_image_to_memory(
                np.ascontiguousarray(pixels).tobytes(), width, height, channels
            )
        )

    return encode


def _isal() -> Encoder:
    from isal import isal_zlib

    return lambda pixels: write_png(pixels, lambda data: isal_zlib.compress(data, 1))


def _zlib_ng() -> Encoder:
    from zlib_ng import zlib_ng

    return lambda pixels: write_png(pixels, lambda data: zlib_ng.compress(data, 1))


def _opencv(level: int) -> Callable[[], Encoder]:
    def load() -> Encoder:
        import cv2

        def encode(pixels: np.ndarray) -> bytes:
            # OpenCV expects BGR channel order, alpha (if any) last.
            bgr = np.concatenate((pixels[:, :, 2::-1], pixels[:, :, 3:]), axis=2)
            ok, buffer = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, level])
            if not ok:
                raise RuntimeError("OpenCV could not encode the image")
            return buffer.tobytes()

        return encode

    return load


def _pillow(level: int) -> Callable[[], Encoder]:
    def load() -> Encoder:
        def encode(pixels: np.ndarray) -> bytes:
            buffer = io.BytesIO()
            # RGB or RGBA, from the array's channel count.
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
            return buffer.getvalue()

        return encode

    return load


ENCODERS: tuple[EncoderInfo, ...] = (
    EncoderInfo("fpng", "fpng (fpng-py), single-pass deflate tuned for images", _fpng),
    EncoderInfo("isal-up", "Easel's chunk writer, Up filter, ISA-L deflate level 1", _isal),
    EncoderInfo("zlib-ng-up", "Easel's chunk writer, Up filter, zlib-ng deflate level 1", _zlib_ng),
    EncoderInfo("opencv-1", "OpenCV imencode, IMWRITE_PNG_COMPRESSION 1", _opencv(1)),
    EncoderInfo("opencv-0", "OpenCV imencode, IMWRITE_PNG_COMPRESSION 0 (stored)", _opencv(0)),
    EncoderInfo("pillow-1", "Pillow, compress_level 1", _pillow(1)),
    EncoderInfo("pillow-0", "Pillow, compress_level 0 (stored)", _pillow(0)),
    EncoderInfo("pillow-6", "Pillow's default, compress_level 6", _pillow(6)),
)

# Served images use the first of these that is installed: compact output at a few ms per image.
_SERVING_ORDER = ("fpng", "isal-up", "pillow-1")


def available() -> dict[str, Encoder]:
    """The installed encoders, by name, in ENCODERS order."""
    loaded: dict[str, Encoder] = {}
    for info in ENCODERS:
        try:
            loaded[info.name] = info.load()
        except ImportError:
            continue
    return loaded


@functools.cache
def serving_encoder() -> tuple[str, Encoder]:
    """The encoder served images use, chosen once on first use."""
    installed = available()
    name = next(name for name in _SERVING_ORDER if name in installed)
    return name, installed[name]


def encode_png(pixels: np.ndarray, text: dict[str, str]) -> bytes:
    """An HxWx3 (RGB) or HxWx4 (RGBA) uint8 array as PNG bytes with `text` in iTXt chunks, by the
    fastest encoder."""
    _, encoder = serving_encoder()
    return with_text(encoder(pixels), text)
