"""What an edit or a variation brings besides a prompt: its decoded input images and mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class EditInputs:
    """Checked, decoded inputs of /v1/images/edits or /v1/images/variations.

    `images` are RGB uint8 arrays (height x width x 3); `mask`, when given, is a bool array the
    size of `images[0]`, True where the image is to be repainted (OpenAI's fully transparent mask
    pixels, already converted from its alpha convention). `strength` is how far from the input
    image-to-image and inpainting may go (0 keeps it, 1 ignores it). `keep_unmasked` asks for the
    original pixels outside the mask to come back unchanged (dall-e-2's behaviour).
    """

    images: tuple[np.ndarray, ...]
    mask: np.ndarray | None
    strength: float
    keep_unmasked: bool = False
