"""Encoding generated pixels: PNG by a fast standard encoder with the settings as text chunks, or
JPEG/WebP with them as XMP, off the event loop. `encoders` lists every PNG encoder measured by
`easel bench`."""

from easel.encoding.encoders import encode_png
from easel.encoding.formats import encode_image, read_xmp
from easel.encoding.metadata import png_text
from easel.encoding.pool import encode_image_async, encode_png_async

__all__ = [
    "encode_image",
    "encode_image_async",
    "encode_png",
    "encode_png_async",
    "png_text",
    "read_xmp",
]
