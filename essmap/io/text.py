"""Text from files made safe to show in a terminal or a message.

Column names, values and file names come from files anyone can write. Printed raw, an escape
sequence (``ESC [ 2 J``, ``ESC ] 0 ;``...) would clear the screen, retitle the terminal or hide
text, and a bidirectional override would reorder what the user reads. :func:`printable` shows
such characters as visible escapes (``\\x1b``, ``\\u202e``) and leaves every other character,
accents included, as it is.
"""

from __future__ import annotations

import unicodedata

#: Bidirectional formatting characters (they reorder the text displayed after them).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """``text`` with control and bidirectional characters shown as escapes.

    ``keep_newlines`` keeps line feeds and tabs (a multi-line message); ``limit`` cuts the
    result to that many characters with an ellipsis (a 5,000-character value in a message).
    """
    value = str(text)
    if limit is not None and len(value) > limit:
        value = value[:limit] + f"… ({len(value)} caractères)"
    kept = "\n\t" if keep_newlines else ""
    if value.isprintable() and not any(c in _BIDI for c in value):
        return value
    return "".join(
        c if c in kept or (c.isprintable() and c not in _BIDI) or unicodedata.category(c) == "Zs" else _escaped(c)
        for c in value
    )
