"""Template context shared by every page."""

from oasst.languages import language_choices


def site(request) -> dict:
    # Loading the user here, before any template text, makes UiLanguageMiddleware pick their language
    # first: a page whose view never asked who the user is would otherwise switch language mid-page.
    request.user.is_authenticated  # noqa: B018
    return {
        "task_lang": request.session.get("task_lang") or getattr(request.user, "preferred_language", "en"),
        "task_languages": language_choices,  # called by the template, in the page's language
    }
