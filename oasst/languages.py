"""The languages contributors can work in: BCP-47 code -> name, in one place. The codes are what is stored and
what the API takes; the names are marked for translation and read in the interface language."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

LANGUAGES: dict[str, Promise] = {
    "ar": gettext_lazy("Arabic"), "bn": gettext_lazy("Bengali"), "ca": gettext_lazy("Catalan"),
    "cs": gettext_lazy("Czech"), "da": gettext_lazy("Danish"), "de": gettext_lazy("German"),
    "el": gettext_lazy("Greek"), "en": gettext_lazy("English"), "eo": gettext_lazy("Esperanto"),
    "es": gettext_lazy("Spanish"), "eu": gettext_lazy("Basque"), "fa": gettext_lazy("Persian"),
    "fi": gettext_lazy("Finnish"), "fr": gettext_lazy("French"), "gl": gettext_lazy("Galician"),
    "he": gettext_lazy("Hebrew"), "hu": gettext_lazy("Hungarian"), "id": gettext_lazy("Indonesian"),
    "it": gettext_lazy("Italian"), "ja": gettext_lazy("Japanese"), "ko": gettext_lazy("Korean"),
    "nl": gettext_lazy("Dutch"), "pl": gettext_lazy("Polish"), "pt-BR": gettext_lazy("Portuguese (Brazil)"),
    "ro": gettext_lazy("Romanian"), "ru": gettext_lazy("Russian"), "sv": gettext_lazy("Swedish"),
    "th": gettext_lazy("Thai"), "tr": gettext_lazy("Turkish"), "uk-UA": gettext_lazy("Ukrainian"),
    "vi": gettext_lazy("Vietnamese"), "zh": gettext_lazy("Chinese"),
}


def language_choices() -> list[tuple[str, str]]:
    """(code, name) for a picker, in the interface language and sorted by that name: call it when the page
    is built (form fields take the function itself as their choices), not at import."""
    return sorted(((code, str(name)) for code, name in LANGUAGES.items()), key=lambda item: item[1].casefold())


def validate_language(code: str) -> None:
    if code not in LANGUAGES:
        raise ValidationError(_("Unknown language code %(code)s.") % {"code": repr(code)[:40]}, code="invalid_language")


def ui_languages() -> dict[str, str]:
    """The interface languages (settings.LANGUAGES: code -> native name), apart from the task languages above."""
    return dict(settings.LANGUAGES)


def validate_ui_language(code: str) -> None:
    """A user's interface language: blank (follow the task language) or one of settings.LANGUAGES."""
    if code and code not in ui_languages():
        raise ValidationError(_("Unknown interface language %(code)s.") % {"code": repr(code)[:40]},
                              code="invalid_ui_language")
