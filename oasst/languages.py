"""The languages contributors can work in: BCP-47 code -> English name, in one place."""

from django.core.exceptions import ValidationError

LANGUAGES: dict[str, str] = {
    "ar": "Arabic", "bn": "Bengali", "ca": "Catalan", "cs": "Czech", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "gl": "Galician",
    "he": "Hebrew", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "nl": "Dutch", "pl": "Polish", "pt-BR": "Portuguese (Brazil)",
    "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "th": "Thai", "tr": "Turkish",
    "uk-UA": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}

LANGUAGE_CHOICES = sorted(LANGUAGES.items(), key=lambda item: item[1])


def validate_language(code: str) -> None:
    if code not in LANGUAGES:
        raise ValidationError(f"Unknown language code {code!r}.", code="invalid_language")
