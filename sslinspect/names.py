"""Class names people type, and text cells other programs open: no look-alikes, nothing invisible, no formulas.

A class name is NFC-normalised (``é`` typed as ``e`` + accent is the same class as ``é``), then refused when it
holds a control, invisible, bidirectional or unassigned character, or letters of two scripts (``gооd`` with
Cyrillic ``о``), or when it looks like another class (its confusable skeleton matches) without being it. Names
in one non-Latin script (``брак``, ``傷``) are fine. CSV cells starting with ``= + - @`` (or a tab/CR) would run
as a formula in Excel/LibreOffice; :func:`csv_safe` neutralises them with a leading apostrophe (OWASP advice).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["GOOD", "BadName", "csv_safe", "name_problem", "normalise_name", "skeleton"]

#: The class of parts without a defect (the one class name with a meaning of its own).
GOOD = "good"

#: Characters that render as nothing (or as blank) although their category is a letter or symbol.
_INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u180e", "\u034f"}
#: Common Cyrillic/Greek/fullwidth look-alikes of Latin letters (a short confusables table, enough for names).
_LOOKALIKE = str.maketrans(
    "аеорсухіјѕԁӏАВЕКМНОРСТХІЈЅԛԝαοντικρεΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdlABEKMHOPCTXIJSqwaovtikpeABEZHIKMNOPTYX",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class BadName(ValueError):
    """An unusable name; the message says which character and why."""


def _script(ch: str) -> str | None:
    """The script of a letter (``LATIN``, ``CYRILLIC``, ``CJK``...), None for digits, marks and punctuation."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA")):
        return "CJK"  # Japanese mixes these on purpose
    return name.split(" ", 1)[0] or None


def name_problem(name: str) -> str | None:
    """Why ``name`` (already NFC) is not a safe name, or None."""
    for ch in name:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") or ch == "\x7f":
            return f"control or unassigned character U+{ord(ch):04X}"
        if cat == "Cf" or ch in _INVISIBLE:
            bidi = unicodedata.bidirectional(ch).startswith(("LR", "RL", "PD"))
            what = "bidirectional control" if bidi else "invisible"
            return f"{what} character U+{ord(ch):04X}"
        if cat == "Zs" and ch != " ":
            return f"unusual space U+{ord(ch):04X}"
    scripts = {s for s in map(_script, name) if s is not None}
    if len(scripts) > 1:
        return f"letters of several scripts ({', '.join(sorted(scripts)).lower()}): it may only look like another name"
    return None


def skeleton(name: str) -> str:
    """What ``name`` looks like: look-alike letters mapped to Latin, compatibility forms folded, case folded."""
    return unicodedata.normalize("NFKC", name).translate(_LOOKALIKE).casefold()


def normalise_name(name: str, existing: Iterable[str] = ()) -> str:
    """``name`` in NFC, checked against :func:`name_problem` and against look-alikes among ``existing``.

    Raises:
        BadName: naming the problem.
    """
    nfc = unicodedata.normalize("NFC", name)
    problem = name_problem(nfc)
    if problem:
        raise BadName(problem)
    look = skeleton(nfc)
    for other in existing:
        o = unicodedata.normalize("NFC", other)
        if o.casefold() != nfc.casefold() and skeleton(o) == look:
            raise BadName(f"looks like the existing class {other!r}")
    return nfc


def csv_safe(cell: str) -> str:
    """``cell`` made inert for spreadsheets: a leading ``= + - @`` (or tab/CR) gets an apostrophe in front.

    Numbers written by this program (``-0.5``) are never passed here; only text from people or files is.
    """
    return "'" + cell if cell.startswith(_FORMULA_START) else cell
