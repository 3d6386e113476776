"""What free text people send may hold, and how pages show the characters nobody sees.

`check_text` is the one check every service runs on the text it stores (messages, comments,
reasons): control characters other than tab, newline and carriage return, and lone surrogates,
are refused (PostgreSQL cannot store a NUL; none of them is text a person writes). `clean_name`
adds what names need: a visible character, and no character that turns the direction of the text
around it. Message texts keep invisible and direction-changing characters as written; pages show
each as a visible, inert marker (`mark_hidden`, `hidden_as_text`).
"""

from __future__ import annotations

import re
import unicodedata

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from oasst.errors import ServiceError

_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
DIRECTION_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Invisible characters that carry no meaning a reader needs (joiners and variation selectors do, so they stay).
_INVISIBLE = "\u180e\u200b\u2060-\u2064\ufeff\U000e0000-\U000e007f"
_HIDDEN = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{''.join(sorted(DIRECTION_CONTROLS))}{_INVISIBLE}]")
# Drawn as nothing although Unicode calls them letters or symbols: Hangul fillers, the blank braille pattern.
_BLANK_GRAPHEMES = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_UNSEEN_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Mc", "Me"})
_UNNAMED = {"Cc": "CONTROL CHARACTER", "Cs": "SURROGATE", "Cn": "UNASSIGNED"}


def character_label(character: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`."""
    name = unicodedata.name(character, "") or _UNNAMED.get(unicodedata.category(character), "CHARACTER")
    return f"U+{ord(character):04X} {name}"


# The fields the checks below name in their refusals ("The display name contains ..."), for the translators.
FIELD_NAMES = {
    "name": pgettext_lazy("a field in a refusal", "name"),
    "display name": pgettext_lazy("a field in a refusal", "display name"),
    "reason": pgettext_lazy("a field in a refusal", "reason"),
    "text": pgettext_lazy("a field in a refusal", "text"),
    "comment": pgettext_lazy("a field in a refusal", "comment"),
}


def _field(what: str) -> str:
    return str(FIELD_NAMES.get(what, what))


def check_text(text: str, *, what: str, code: str) -> None:
    """Refuse control characters (all but tab, newline and carriage return) and lone surrogates."""
    if found := _REFUSED.search(text):
        if unicodedata.category(found.group()) == "Cs":
            message = _("The %(field)s contains an unpaired surrogate (%(character)s), which is not allowed: "
                        "remove it.")
        else:
            message = _("The %(field)s contains a control character (%(character)s), which is not allowed: "
                        "remove it.")
        raise ServiceError(message % {"field": _field(what), "character": character_label(found.group())}, code=code)


def _visible(character: str) -> bool:
    return character not in _BLANK_GRAPHEMES and unicodedata.category(character) not in _UNSEEN_CATEGORIES


def clean_name(name: str, *, what: str, code: str, empty_code: str) -> str:
    """A name as shown to others: checked text, no direction control, at least one visible character."""
    check_text(name, what=what, code=code)
    for character in name:
        if character in DIRECTION_CONTROLS:
            message = _("The %(field)s contains %(character)s, which changes the direction of the text around it: "
                        "remove it.")
            raise ServiceError(message % {"field": _field(what), "character": character_label(character)}, code=code)
    if not any(_visible(character) for character in name):
        raise ServiceError(_("The %(field)s needs at least one visible character.") % {"field": _field(what)},
                           code=empty_code)
    return name


def validate_name(value: str) -> None:
    """Model-field validator for names that forms edit directly (the admin, allauth's sign-up)."""
    clean_name(value, what="name", code="invalid_name", empty_code="invisible_name")


def hidden_as_text(text: str) -> str:
    """The text with each hidden character written out as `[U+202E]`, for plain-text places
    (attributes, SVG, the admin's lists)."""
    return _HIDDEN.sub(lambda found: f"[U+{ord(found.group()):04X}]", text)


def _marker(found: re.Match) -> str:
    character = found.group()
    return f'<span class="control-char" title="{escape(character_label(character))}">[U+{ord(character):04X}]</span>'


def mark_hidden_in_html(html: str) -> str:
    """Replace each hidden character of sanitised HTML, whose attributes hold none, by a marker."""
    return _HIDDEN.sub(_marker, html)


def mark_hidden(text: str) -> SafeString:
    """Plain text as HTML: escaped, each hidden character a visible marker."""
    return mark_safe(mark_hidden_in_html(escape(text)))  # noqa: S308 - escaped first; markers are fixed markup
