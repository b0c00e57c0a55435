"""Which language a prompt is written in, told by its script alone: no model call, no dictionary.

Text encoders read English (CLIP, T5) or English and Chinese (the LLM encoders); telling those
apart from everything else needs only the script. A script stands for its most common language
(Cyrillic: ru, Arabic: ar); Latin script counts as English, the language every encoder reads best.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

ENGLISH = "en"
# A script Easel has no language for: no encoder is taken to read it.
UNDETERMINED = "und"

# The first word of a letter's Unicode name, for the scripts that name one language.
_SCRIPT_LANGUAGES = {
    "LATIN": ENGLISH,
    "CJK": "zh",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "HANGUL": "ko",
    "CYRILLIC": "ru",
    "ARABIC": "ar",
    "HEBREW": "he",
    "GREEK": "el",
    "THAI": "th",
    "DEVANAGARI": "hi",
    "ARMENIAN": "hy",
    "GEORGIAN": "ka",
}
# One Han character or kana carries about as much as a Latin word of four or five letters; a
# prompt is taken to be in a non-Latin script when its letters weigh at least as much.
_LATIN_LETTERS_PER_SIGN = 4


def detect_language(text: str) -> str:
    """The language of `text` by its dominant script: 'en' for Latin script (or no letters)."""
    scripts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            scripts[unicodedata.name(char, "UNKNOWN").split()[0]] += 1
    latin = scripts.pop("LATIN", 0)
    if not scripts:
        return ENGLISH
    # Japanese is written in kana and Han characters together.
    if scripts["HIRAGANA"] or scripts["KATAKANA"]:
        script = "HIRAGANA"
        signs = scripts["HIRAGANA"] + scripts["KATAKANA"] + scripts["CJK"]
    else:
        script, signs = scripts.most_common(1)[0]
    if signs * _LATIN_LETTERS_PER_SIGN < latin:
        return ENGLISH
    return _SCRIPT_LANGUAGES.get(script, UNDETERMINED)


def is_english(text: str) -> bool:
    return detect_language(text) == ENGLISH
