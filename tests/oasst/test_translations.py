"""The interface catalogues (locale/<lang>/LC_MESSAGES/django.po): complete for every string the code
marks, correctly translated in form (placeholders, plural forms, headers), and compiled by
`compile_translations` with msgfmt or, on a bare machine, polib. See docs/translations.md.

The completeness tests fail while a catalogue has untranslated, fuzzy or missing entries: run
`manage.py makemessages ...` (the command in docs/translations.md) and translate what it adds."""

import contextlib
import gettext
import io
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import translation

from oasst.translations import compile_with_polib, completeness_problems, format_problems, header_problems, nplurals

LANGUAGES = ["de", "es", "fr"]
PLURAL_FORMS = {"de": "nplurals=2; plural=(n != 1);", "es": "nplurals=2; plural=(n != 1);",
                "fr": "nplurals=2; plural=(n > 1);"}
NOT_SCANNED = {".venv", "tests", "bench", "locale", "staticfiles", "media", "exports", "models", "runs", "docs"}


def catalogue(language: str) -> polib.POFile:
    return polib.pofile(str(Path(settings.BASE_DIR) / "locale" / language / "LC_MESSAGES" / "django.po"))


def key(entry: polib.POEntry) -> tuple:
    return entry.msgctxt, entry.msgid, entry.msgid_plural


@pytest.fixture(scope="module")
def marked(tmp_path_factory) -> set[tuple]:
    """Every (context, msgid, plural) the code marks now: makemessages run over links to the project's
    source folders, writing into a temporary locale folder (the real catalogues stay untouched)."""
    if not shutil.which("xgettext"):
        pytest.skip("makemessages needs GNU gettext's xgettext")
    root = tmp_path_factory.mktemp("sources")
    for item in Path(settings.BASE_DIR).iterdir():
        if item.is_dir() and item.name not in NOT_SCANNED and not item.name.startswith("."):
            (root / item.name).symlink_to(item)
    with override_settings(LOCALE_PATHS=[root / "locale"]), contextlib.chdir(root):
        (root / "locale").mkdir()
        call_command("makemessages", locale=["de"], symlinks=True, verbosity=0,
                     ignore_patterns=[".venv/*", "tests/*", "bench/*"])
    generated = polib.pofile(str(root / "locale" / "de" / "LC_MESSAGES" / "django.po"))
    assert len(generated) > 100, "makemessages found almost nothing: is the source tree linked?"
    return {key(entry) for entry in generated}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_catalogue_has_every_marked_string(marked, language):
    present = {key(entry) for entry in catalogue(language) if not entry.obsolete}
    missing = sorted(marked - present, key=str)
    assert not missing, f"{len(missing)} marked strings are not in {language}/django.po, e.g. {missing[:5]}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_catalogue_is_fully_translated(language):
    problems = completeness_problems(catalogue(language))
    assert not problems, f"{len(problems)} entries to do in {language}/django.po, e.g. {problems[:5]}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_catalogue_headers_and_placeholders_are_right(language):
    po = catalogue(language)
    assert po.metadata["Language"] == language
    assert po.metadata["Plural-Forms"] == PLURAL_FORMS[language]
    assert header_problems(po) == [] and format_problems(po) == []
    if shutil.which("msgfmt"):
        result = subprocess.run([shutil.which("msgfmt"), "--check", "-o", "/dev/null", po.fpath],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_a_page_is_translated_when_its_language_is_picked(client, language):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    html = client.get("/leaderboard/").content.decode()
    # strings only our catalogue has (Django's own translates "Log in", for one)
    english = ["Leaderboard", "Terms of service", "Interface language"]
    with translation.override(language):
        words = [translation.gettext(text) for text in english]
    untranslated = [text for text, word in zip(english, words, strict=True) if text == word]
    assert not untranslated, f"the {language} catalogue leaves {untranslated} in English"
    for word in words:
        assert f">{word}<" in html


@pytest.mark.django_db
def test_a_compiled_catalogue_translates_the_page_and_overrides_djangos(client, locale_dir):
    """The plumbing, independent of the translators' progress: a small catalogue, compiled, is what
    the page shows, also for a msgid Django's own catalogue translates differently."""
    write_po(locale_dir / "de" / "LC_MESSAGES" / "django.po", 'msgid "Leaderboard"\nmsgstr "Bestenliste"\n\n'
             'msgid "Log in"\nmsgstr "Einloggen"\n')
    call_command("compile_translations", "--use-polib", stdout=io.StringIO())
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "de"
    html = client.get("/leaderboard/").content.decode()
    assert '<html lang="de">' in html
    assert ">Bestenliste<" in html and ">Einloggen<" in html


# --- the placeholder checks, on small catalogues -----------------------------------------------------

def write_po(path: Path, entries: str, plural_forms: str = "nplurals=2; plural=(n != 1);") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'msgid ""\nmsgstr ""\n"Language: de\\n"\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
                    f'"Plural-Forms: {plural_forms}\\n"\n\n{entries}', encoding="utf-8")
    return path


GOOD = '''#, python-format
msgid "%(count)s reply"
msgid_plural "%(count)s replies"
msgstr[0] "%(count)s Antwort"
msgstr[1] "%(count)s Antworten"

#, python-format
msgid "Hello %(name)s, 100%% done"
msgstr "Hallo %(name)s, 100%% fertig"

#, python-brace-format
msgid "Your username is <strong>{}</strong>."
msgstr "Dein Benutzername ist <strong>{}</strong>."
'''


@pytest.mark.parametrize(("entries", "problem"), [
    ('#, python-format\nmsgid "Hello %(name)s"\nmsgstr "Hallo %(nom)s"\n', "placeholders"),
    ('#, python-format\nmsgid "%(a)s of %(b)s"\nmsgstr "%(a)s von"\n', "placeholders"),
    ('#, python-brace-format\nmsgid "Is {}."\nmsgstr "Ist."\n', "placeholders"),
    ('#, python-format\nmsgid "%(count)s day"\nmsgid_plural "%(count)s days"\n'
     'msgstr[0] "ein Tag"\nmsgstr[1] "%(anzahl)s Tage"\n', "unknown placeholders"),
])
def test_format_problems_finds_placeholders_that_differ(tmp_path, entries, problem):
    po = polib.pofile(str(write_po(tmp_path / "x.po", entries)))
    found = format_problems(po)
    assert len(found) == 1 and problem in found[0]


def test_format_problems_accepts_right_translations(tmp_path):
    po = polib.pofile(str(write_po(tmp_path / "x.po", GOOD)))
    assert format_problems(po) == [] and header_problems(po) == [] and completeness_problems(po) == []
    assert nplurals(po) == 2


def test_completeness_problems_names_empty_fuzzy_and_half_plural(tmp_path):
    po = polib.pofile(str(write_po(tmp_path / "x.po", '''msgid "Save"
msgstr ""

#, fuzzy
msgid "Cancel"
msgstr "Abbrechen"

msgid "%(n)s task"
msgid_plural "%(n)s tasks"
msgstr[0] "%(n)s Aufgabe"
msgstr[1] ""
''')))
    problems = completeness_problems(po)
    assert any(p.startswith("untranslated: 'Save'") for p in problems)
    assert any(p.startswith("fuzzy: 'Cancel'") for p in problems)
    assert any("'%(n)s task'" in p for p in problems)


# --- compile_translations ----------------------------------------------------------------------------

@pytest.fixture
def locale_dir(tmp_path, settings):
    settings.LOCALE_PATHS = [tmp_path / "locale"]
    return tmp_path / "locale"


@pytest.mark.parametrize("use_polib", [True, False])
def test_compile_translations_writes_mo_files_django_reads(locale_dir, use_polib, capsys):
    if not use_polib and not shutil.which("msgfmt"):
        pytest.skip("no msgfmt here")
    po = write_po(locale_dir / "de" / "LC_MESSAGES" / "django.po", GOOD)
    call_command("compile_translations", *(["--use-polib"] if use_polib else []))
    assert "Compiled 1 catalogues" in capsys.readouterr().out
    with open(po.with_suffix(".mo"), "rb") as mo:
        catalog = gettext.GNUTranslations(mo)
    assert catalog.gettext("Hello %(name)s, 100%% done") == "Hallo %(name)s, 100%% fertig"
    assert catalog.ngettext("%(count)s reply", "%(count)s replies", 3) == "%(count)s Antworten"


@pytest.mark.parametrize("use_polib", [True, False])
@pytest.mark.parametrize("entries", [
    '#, python-format\nmsgid "Hello %(name)s"\nmsgstr "Hallo %(nom)s"\n',   # a renamed placeholder
    'msgid "Save"\nmsgstr "Speichern\n',                                      # an unterminated string
])
def test_compile_translations_refuses_a_broken_catalogue(locale_dir, use_polib, entries):
    if not use_polib and not shutil.which("msgfmt"):
        pytest.skip("no msgfmt here")
    po = write_po(locale_dir / "de" / "LC_MESSAGES" / "django.po", entries)
    with pytest.raises(CommandError):
        call_command("compile_translations", *(["--use-polib"] if use_polib else []))
    assert not po.with_suffix(".mo").exists()


def test_compile_translations_refuses_a_missing_plural_forms_header(locale_dir):
    po = write_po(locale_dir / "fr" / "LC_MESSAGES" / "django.po", GOOD, plural_forms="")
    with pytest.raises(ValueError, match="Plural-Forms"):
        compile_with_polib(po)
    assert not po.with_suffix(".mo").exists()


def test_compile_translations_says_when_there_is_nothing_to_compile(locale_dir):
    with pytest.raises(CommandError, match="No catalogues"):
        call_command("compile_translations")


def test_compile_translations_runs_as_a_command_without_gettext(tmp_path):
    """The command on a machine without msgfmt: an empty folder is all of PATH."""
    result = subprocess.run([sys.executable, "manage.py", "compile_translations"], cwd=settings.BASE_DIR,
                            env={"PATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "oasst.settings"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "with polib" in result.stdout
