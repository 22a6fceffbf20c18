"""Text folding for search that ignores Vietnamese diacritics and case."""

from __future__ import annotations

import unicodedata

_MAX_MARKS = 10_000


class _Marks(dict[int, int | None]):
    """A str.translate table that drops combining marks (category Mn) and keeps every other character, filled in
    as characters are met: translate runs in C, where a generator over unicodedata.category runs per character in
    Python."""

    def __missing__(self, code: int) -> int | None:
        kept = None if unicodedata.category(chr(code)) == "Mn" else code
        if len(self) < _MAX_MARKS:  # bounded: names could carry any of a million code points
            self[code] = kept
        return kept


_STRIP_MARKS = _Marks()


def fold(text: str) -> str:
    """Lower-case, strip diacritics (đ -> d) and squeeze spaces: 'Đà  Lạt' -> 'da lat'."""
    # str.split() splits at the characters the regular expression \s matches (both use str.isspace).
    if text.isascii():  # no marks to strip, and ASCII case-folds as it lower-cases
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return " ".join(decomposed.translate(_STRIP_MARKS).casefold().split())
