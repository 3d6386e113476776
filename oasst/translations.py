"""Checks and compiling of the interface catalogues (locale/<lang>/LC_MESSAGES/*.po) without GNU gettext:
the compile_translations command falls back to these when msgfmt is missing, and the completeness test
uses them. See docs/translations.md."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import polib
from django.conf import settings

# printf-style conversions as Python's % operator reads them: %s, %(name)s, %5.2f, %%
PYTHON_FORMAT = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<conversion>[diouxXeEfFgGcrsa%])")
BRACE_FORMAT = re.compile(r"(?<!\{)\{(?P<field>[^{}!:]*)(?:![rsa])?(?::[^{}]*)?\}(?!\})")
# a line of a .po file: blank, a comment, or a keyword and/or one complete "..." string (polib reads an
# unterminated string without complaint, cutting its last character)
PO_LINE = re.compile(r'^\s*(?:#.*|(?:(?:msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+)?"(?:[^"\\]|\\.)*"\s*)?$')
PLURAL_FORMS = re.compile(r"^\s*nplurals\s*=\s*(?P<n>\d+)\s*;\s*plural\s*=\s*(?P<rule>.+?);?\s*$")


def catalogues() -> list[Path]:
    """Every .po file under LOCALE_PATHS, sorted."""
    return sorted(po for root in settings.LOCALE_PATHS for po in Path(root).glob("*/LC_MESSAGES/*.po"))


def placeholders(text: str, flags: list[str]) -> Counter:
    """The placeholders a msgid or msgstr uses, by the format its flags name ("%%" is no placeholder)."""
    found: Counter = Counter()
    if "python-format" in flags:
        found.update(f"%({m['name']}){m['conversion']}" if m["name"] is not None else f"%{m['conversion']}"
                     for m in PYTHON_FORMAT.finditer(text) if m["conversion"] != "%")
    if "python-brace-format" in flags:
        found.update("{" + m["field"] + "}" for m in BRACE_FORMAT.finditer(text))
    return found


def nplurals(po: polib.POFile) -> int | None:
    match = PLURAL_FORMS.match(po.metadata.get("Plural-Forms", ""))
    return int(match["n"]) if match else None


def format_problems(po: polib.POFile) -> list[str]:
    """Translations whose placeholders differ from their msgid's (what `msgfmt --check-format` refuses).
    Named placeholders must match exactly; in a plural msgstr a form may leave out the count, as msgfmt allows."""
    problems = []
    for entry in po.translated_entries():
        if entry.msgid_plural:
            source = placeholders(entry.msgid_plural, entry.flags) | placeholders(entry.msgid, entry.flags)
            for index, msgstr in sorted(entry.msgstr_plural.items()):
                extra = placeholders(msgstr, entry.flags) - source
                if extra:
                    problems.append(f"{entry.msgid!r} msgstr[{index}]: unknown placeholders {sorted(extra)}")
        elif placeholders(entry.msgid, entry.flags) != placeholders(entry.msgstr, entry.flags):
            problems.append(f"{entry.msgid!r}: placeholders {sorted(placeholders(entry.msgid, entry.flags))} "
                            f"but the translation has {sorted(placeholders(entry.msgstr, entry.flags))}")
    return problems


def header_problems(po: polib.POFile) -> list[str]:
    problems = []
    if not po.metadata.get("Language"):
        problems.append("no Language header")
    if nplurals(po) is None:
        problems.append(f"Plural-Forms header missing or malformed: {po.metadata.get('Plural-Forms', '')!r}")
    return problems


def completeness_problems(po: polib.POFile) -> list[str]:
    """Entries a translator has still to do: untranslated, fuzzy, or a plural without all its forms."""
    problems = [f"untranslated: {entry.msgid!r}" for entry in po.untranslated_entries()]
    problems += [f"fuzzy: {entry.msgid!r}" for entry in po.fuzzy_entries()]
    forms = nplurals(po)
    for entry in po.translated_entries():
        if entry.msgid_plural and forms is not None:
            missing = [n for n in range(forms) if not entry.msgstr_plural.get(n)]
            if missing:
                problems.append(f"plural {entry.msgid!r}: msgstr{missing} empty")
    return problems


def syntax_problems(po_path: Path) -> list[str]:
    lines = po_path.read_text(encoding="utf-8").splitlines()
    return [f"line {number}: not a complete string: {line[:60]!r}"
            for number, line in enumerate(lines, 1) if not PO_LINE.match(line)]


def compile_with_polib(po_path: Path) -> Path:
    """Checks a catalogue and writes its .mo beside it; ValueError names what is wrong."""
    problems = syntax_problems(po_path)
    if problems:
        raise ValueError("; ".join(problems[:5]))
    try:
        po = polib.pofile(str(po_path))
    except (OSError, ValueError) as error:  # polib reports a syntax error as OSError
        raise ValueError(f"cannot be read: {error}") from error
    problems = header_problems(po) + format_problems(po)
    if problems:
        raise ValueError("; ".join(problems))
    mo_path = po_path.with_suffix(".mo")
    po.save_as_mofile(str(mo_path))
    return mo_path
