"""JPEG and WebP encoding for the GPT image models' `output_format`, with the settings as XMP.

Measured on a 2-core AMD EPYC, 1024x1024 (bench results in README): Pillow's libjpeg-turbo at
quality 95 takes about 3 ms, near fpng's PNG; libwebp is slower at every setting, least at
method 0, which is used.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

from easel.catalog.output import ImageFormat
from easel.encoding.encoders import encode_png

# Pillow's documentation: JPEG quality above 95 disables parts of the compression for files about
# twice the size and no visible gain, so OpenAI's `output_compression` 96-100 all mean 95.
MAX_JPEG_QUALITY = 95
# libwebp's fastest method; higher ones cost several times the time for a few percent.
WEBP_METHOD = 0

XMP_NAMESPACE = "urn:easel:metadata:1.0"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
ET.register_namespace("x", "adobe:ns:meta/")
ET.register_namespace("rdf", _RDF)
ET.register_namespace("easel", XMP_NAMESPACE)


def encode_image(
    pixels: np.ndarray, text: dict[str, str], image_format: ImageFormat, compression: int
) -> bytes:
    """An HxWx3 (RGB) or HxWx4 (RGBA: png and webp only) uint8 array in `image_format`, carrying
    `text`: PNG text chunks, else XMP. `compression` (0-100, OpenAI's `output_compression`) is
    the JPEG/WebP quality."""
    if image_format == "png":
        return encode_png(pixels, text)
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if image_format == "jpeg":
        image.save(buffer, "JPEG", quality=min(compression, MAX_JPEG_QUALITY), xmp=xmp(text))
    else:
        image.save(buffer, "WEBP", quality=compression, method=WEBP_METHOD, xmp=xmp(text))
    return buffer.getvalue()


def resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """`pixels` at width x height (bicubic), as they are when already that size."""
    if pixels.shape[:2] == (height, width):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC))


def xmp(text: dict[str, str]) -> bytes:
    """An XMP packet with each key of `text` as an element in Easel's namespace."""
    root = ET.Element("{adobe:ns:meta/}xmpmeta")
    rdf = ET.SubElement(root, f"{{{_RDF}}}RDF")
    description = ET.SubElement(rdf, f"{{{_RDF}}}Description", {f"{{{_RDF}}}about": ""})
    for key, value in text.items():
        ET.SubElement(description, f"{{{XMP_NAMESPACE}}}{key}").text = value
    # ASCII with character references: valid XML for any prompt's characters.
    return ET.tostring(root)


def read_xmp(packet: bytes) -> dict[str, str]:
    """The keys `xmp` wrote, read back from a packet (for tests and tools)."""
    prefix = f"{{{XMP_NAMESPACE}}}"
    return {
        element.tag.removeprefix(prefix): element.text or ""
        for element in ET.fromstring(packet).iter()
        if element.tag.startswith(prefix)
    }
