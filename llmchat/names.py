"""People's names: which characters a name may hold, and when two names are one to a reader.

- **Repertoire**: a name follows RFC 8265's ``UsernameCasePreserved`` profile (PRECIS, via
  ``precis-i18n``): letters and digits of any script plus ASCII punctuation; full-width forms
  are mapped to their usual ones; invisible and formatting characters (zero-width joiners,
  variation selectors, the combining grapheme joiner, the Hangul filler), spaces, symbols (the
  braille blank) and compatibility forms (mathematical bold) are refused, naming the character.
- **Sameness**: two names are the same name when their confusable skeletons are equal (Unicode
  UTS #39, via ``disarm``'s ``skeleton_key``: the TR39 confusables table, case folded, digits
  folded to the letters they look like): "alice" spelled with a Cyrillic a (U+0430) is
  ``alice``, and so are ``ALICE`` and the full-width one. Reserved names are compared the same
  way, so "system" with a Cyrillic dze (U+0455) is ``system``.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import disarm
from precis_i18n import get_profile

_PROFILE = get_profile("UsernameCasePreserved")

_WHY = {
    "precis_ignorable_properties": "an invisible or formatting character",
    "zero_width_joiner": "an invisible joiner",
    "zero_width_nonjoiner": "an invisible joiner",
    "has_compat": "a compatibility form (write the plain letter)",
    "symbols": "a symbol",
    "punctuation": "punctuation other than ASCII",
    "spaces": "a space",
    "controls": "a control character",
    "other_letter_digits": "a character no name may hold",
    "unassigned": "an unassigned code point",
    "bidi_rule": "a mix of right-to-left and left-to-right text",
}


def precis_name(value: str) -> str:
    """``value`` as a name (RFC 8265, case preserved), or ValueError naming what is wrong."""
    try:
        return str(_PROFILE.enforce(value))
    except UnicodeEncodeError as exc:
        if exc.start < len(value) and exc.reason not in ("empty", "bidi_rule"):
            ch = value[exc.start]
            what = unicodedata.name(ch, "unnamed")
            kind = exc.reason.rsplit("/", 1)[-1]
            why = _WHY.get(kind, f"not allowed in a name ({kind})")
            raise ValueError(f"name: U+{ord(ch):04X} {what} is {why}") from None
        raise ValueError(f"name: not allowed ({exc.reason})") from None


@lru_cache(maxsize=8192)
def skeletons(name: str) -> frozenset[str]:
    """The confusable skeletons a name is compared by (never shown to anyone): of the name as
    written, where a capital I looks like an l, and of its case-folded form, where ``ALICE`` is
    ``alice``. Two names are one when they share a skeleton."""
    return frozenset(
        str(disarm.skeleton_key(form, digit_policy="tr39")) for form in (name, name.casefold())
    )


def same_name(a: str, b: str) -> bool:
    return bool(skeletons(a) & skeletons(b))


def looks_like_any(name: str, others: frozenset[str] | list[str]) -> str | None:
    """The first of ``others`` that ``name`` cannot be told apart from, or None."""
    keys = skeletons(name)
    for other in others:
        if keys & skeletons(other):
            return other
    return None
