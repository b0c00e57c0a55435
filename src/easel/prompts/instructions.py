"""What the rewriting model is told: one system prompt per kind of rewrite."""

from __future__ import annotations

from typing import Literal

RewriteMode = Literal["expand", "translate"]

# Names for the languages an encoder may read, as the system prompt writes them.
_LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}

_KEEP = (
    "Keep every subject, every count, every text in quotation marks (verbatim, in its own "
    "language) and the requested style."
)


def system_prompt(mode: RewriteMode, language: str) -> str:
    """The instructions for rewriting a prompt into `language` ('en', 'zh')."""
    name = _LANGUAGE_NAMES.get(language, "English")
    if mode == "translate":
        return (
            f"Translate the user's image prompt into {name}. {_KEEP} Add nothing. "
            "Reply with the translation only."
        )
    return (
        f"Rewrite the user's image prompt as one detailed {name} description of the image, "
        f"at most 70 words: subject, setting, composition, lighting, colours. {_KEEP} "
        "Do not contradict the prompt. Reply with the description only."
    )
