"""Decoding an image a client sent, which is hostile until proven otherwise: its type is read from
its bytes, its declared dimensions are checked before any pixel buffer exists, and whatever a
decoder makes of it ends as a 400 in OpenAI's envelope, never a 500."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from easel.errors import InvalidRequestError

InputFormat = Literal["png", "jpeg", "webp"]

# Magic bytes of the formats Easel decodes; anything else is refused whatever its name or header.
_SIGNATURES: tuple[tuple[InputFormat, bytes, int], ...] = (
    ("png", b"\x89PNG\r\n\x1a\n", 0),
    ("jpeg", b"\xff\xd8\xff", 0),
    ("webp", b"WEBP", 8),
)
_PILLOW_NAMES: dict[InputFormat, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}

# A decoded input costs width x height x 4 bytes and more again once resized: 40 megapixels
# (e.g. 8000 x 5000) holds any photo a client sends for editing, and no bomb gets past it.
MAX_INPUT_PIXELS = 40_000_000
MAX_INPUT_SIDE = 16_384


@dataclass(frozen=True)
class ImageLimits:
    """What one input field accepts: formats (by content) and file size."""

    formats: tuple[InputFormat, ...]
    max_bytes: int


@dataclass(frozen=True, eq=False)
class DecodedImage:
    format: InputFormat
    rgb: np.ndarray  # height x width x 3, uint8
    # The alpha channel (height x width, uint8) when the file has one (or a transparent colour).
    alpha: np.ndarray | None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def sniff_format(data: bytes) -> InputFormat | None:
    """The format `data` is in, by its magic bytes; None for anything Easel does not decode."""
    for name, magic, offset in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (name != "webp" or data[:4] == b"RIFF"):
            return name
    return None


def decode_image(data: bytes, param: str, limits: ImageLimits) -> DecodedImage:
    """`data` decoded, or a 400 naming `param`: wrong type, too large, a bomb, animated, corrupt."""
    if len(data) > limits.max_bytes:
        raise InvalidRequestError(
            f"Invalid file '{param}': the file is {_megabytes(len(data))}, over this model's "
            f"limit of {_megabytes(limits.max_bytes)}.",
            param=param,
            code="image_too_large",
        )
    image_format = sniff_format(data)
    if image_format is None or image_format not in limits.formats:
        found = f"'{image_format}'" if image_format else "not an image Easel reads"
        raise InvalidRequestError(
            f"Invalid file '{param}': unsupported image format ({found}). Supported formats "
            f"are {', '.join(repr(f) for f in limits.formats)}.",
            param=param,
            code="invalid_image_format",
        )
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning would only be logged; the limit below refuses instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PILLOW_NAMES[image_format]]) as image:
                # Opening reads the header only: refuse by declared size before decoding.
                _check_dimensions(image.size, param)
                frames: int = getattr(image, "n_frames", 1)
                if frames > 1:
                    raise InvalidRequestError(
                        f"Invalid file '{param}': the image is animated ({frames} frames). "
                        "Send a single still image.",
                        param=param,
                        code="invalid_image",
                    )
                image.load()
                # Cameras store portraits sideways with an EXIF turn; the client means upright.
                return _decoded(ImageOps.exif_transpose(image), image_format)
    except InvalidRequestError:
        raise
    except Image.DecompressionBombError:
        raise _too_many_pixels(param) from None
    # Decoders raise whatever their parsing hits on a malformed file (OSError for truncation,
    # SyntaxError, ValueError, struct.error, EOFError...): every one is the client's bad file.
    except Exception:
        raise InvalidRequestError(
            f"Invalid file '{param}': the {image_format} file is corrupt or truncated and "
            "could not be decoded.",
            param=param,
            code="invalid_image",
        ) from None


def _check_dimensions(size: tuple[int, int], param: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidRequestError(
            f"Invalid file '{param}': the image declares no pixels ({width}x{height}).",
            param=param,
            code="invalid_image",
        )
    if width > MAX_INPUT_SIDE or height > MAX_INPUT_SIDE or width * height > MAX_INPUT_PIXELS:
        raise _too_many_pixels(param, f" ({width}x{height})")


def _too_many_pixels(param: str, declared: str = "") -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid file '{param}': the image's dimensions{declared} exceed this server's limit "
        f"of {MAX_INPUT_PIXELS // 1_000_000} megapixels and {MAX_INPUT_SIDE} pixels a side.",
        param=param,
        code="image_too_large",
    )


def _decoded(image: Image.Image, image_format: InputFormat) -> DecodedImage:
    alpha = None
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint8)
        rgb = np.asarray(rgba.convert("RGB"), dtype=np.uint8)
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return DecodedImage(format=image_format, rgb=rgb, alpha=alpha)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
