"""PNG encoding of generated pixels: a fast standard encoder, off the event loop, with the settings
as text chunks. `encoders` lists every encoder measured by `easel bench`."""

from easel.encoding.encoders import encode_png
from easel.encoding.metadata import png_text
from easel.encoding.pool import encode_png_async

__all__ = ["encode_png", "encode_png_async", "png_text"]
