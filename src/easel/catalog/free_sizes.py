"""gpt-image-2's free sizes: any WIDTHxHEIGHT within OpenAI's published limits."""

from __future__ import annotations

from easel.errors import InvalidRequestError

SIDE_MULTIPLE = 16
MAX_ASPECT = 3  # from 1:3 to 3:1
MAX_LONG_SIDE, MAX_SHORT_SIDE = 3840, 2160


def check_free_size(size: str, width: int, height: int) -> None:
    """Refuse a parsed `size` outside OpenAI's rules for gpt-image-2, saying which one it breaks."""
    if width % SIDE_MULTIPLE or height % SIDE_MULTIPLE:
        raise _invalid_size(size, f"width and height must both be multiples of {SIDE_MULTIPLE}")
    long_side, short_side = max(width, height), min(width, height)
    if long_side > MAX_ASPECT * short_side:
        raise _invalid_size(
            size, f"the aspect ratio must be between 1:{MAX_ASPECT} and {MAX_ASPECT}:1"
        )
    if long_side > MAX_LONG_SIDE or short_side > MAX_SHORT_SIDE:
        raise _invalid_size(size, f"the largest supported size is {MAX_LONG_SIDE}x{MAX_SHORT_SIDE}")


def _invalid_size(size: str, rule: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid value: '{size}'. For this model, {rule}.", param="size", code="invalid_value"
    )
