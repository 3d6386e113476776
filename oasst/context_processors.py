"""Template context shared by every page."""

from oasst.languages import LANGUAGE_CHOICES


def site(request) -> dict:
    return {
        "task_lang": request.session.get("task_lang") or getattr(request.user, "preferred_language", "en"),
        "task_languages": LANGUAGE_CHOICES,
    }
