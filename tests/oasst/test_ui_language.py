"""The interface language: which one a request gets (profile setting, cookie, task language,
Accept-Language), the picker (i18n/setlang/) and the profile's "Interface language" setting.
Pages are checked by <html lang> and Content-Language, which do not depend on the catalogues' contents."""

import re

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from oasst import services
from oasst.errors import ServiceError
from oasst.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

COOKIE = settings.LANGUAGE_COOKIE_NAME


def page_language(response) -> str:
    assert response.status_code == 200
    html_lang = re.search(r'<html lang="([^"]+)"', response.content.decode())[1]
    assert response["Content-Language"] == html_lang
    return html_lang


def logged_in(**fields) -> tuple[Client, User]:
    user = UserFactory(**fields)
    client = Client()
    client.force_login(user)
    return client, user


# --- which language a request gets -----------------------------------------------------------------

def test_an_anonymous_visitor_gets_english_by_default(client):
    assert page_language(client.get("/leaderboard/")) == "en"


def test_an_anonymous_visitor_gets_their_browsers_language(client):
    assert page_language(client.get("/leaderboard/", HTTP_ACCEPT_LANGUAGE="fr-CH,fr;q=0.9,en;q=0.5")) == "fr"


def test_the_cookie_outranks_the_browsers_language(client):
    client.cookies[COOKIE] = "es"
    assert page_language(client.get("/leaderboard/", HTTP_ACCEPT_LANGUAGE="fr")) == "es"


def test_a_contributor_gets_their_task_language_when_the_interface_has_it():
    client, _ = logged_in(preferred_language="de")
    assert page_language(client.get("/profile/", HTTP_ACCEPT_LANGUAGE="fr")) == "de"


def test_a_task_language_the_interface_lacks_falls_back_to_the_browsers_language():
    client, _ = logged_in(preferred_language="ja")
    assert page_language(client.get("/profile/", HTTP_ACCEPT_LANGUAGE="es")) == "es"


def test_the_cookie_outranks_the_task_language():
    client, _ = logged_in(preferred_language="de")
    client.cookies[COOKIE] = "fr"
    assert page_language(client.get("/profile/")) == "fr"


def test_the_profile_setting_outranks_cookie_task_language_and_browser():
    client, _ = logged_in(preferred_language="de", ui_language="es")
    client.cookies[COOKIE] = "fr"
    assert page_language(client.get("/profile/", HTTP_ACCEPT_LANGUAGE="de")) == "es"


# --- the picker ------------------------------------------------------------------------------------

def test_the_picker_sets_the_cookie_and_returns_to_the_page(client):
    response = client.post("/i18n/setlang/", {"language": "de", "next": "/leaderboard/?frame=week"})
    assert response.status_code == 302 and response.url == "/leaderboard/?frame=week"
    assert response.cookies[COOKIE].value == "de"
    assert page_language(client.get("/leaderboard/")) == "de"


def test_the_picker_is_in_every_page_with_every_language(client):
    html = client.get("/leaderboard/").content.decode()
    picker = re.search(r'<form method="post" action="/i18n/setlang/".*?</form>', html, re.S)[0]
    assert 'name="csrfmiddlewaretoken"' in picker and 'name="next" value="/leaderboard/"' in picker
    assert re.findall(r'<option value="(\w+)"', picker) == ["en", "de", "es", "fr"]
    assert ">Deutsch<" in picker and ">Español<" in picker and ">Français<" in picker


def test_the_picker_saves_a_contributors_interface_language():
    client, user = logged_in(preferred_language="en")
    response = client.post("/i18n/setlang/", {"language": "fr", "next": "/profile/"})
    assert response.status_code == 302
    assert User.objects.get(pk=user.pk).ui_language == "fr"
    other_device = Client()
    other_device.force_login(user)
    assert page_language(other_device.get("/profile/")) == "fr"


@pytest.mark.parametrize("code", ["xx", "", "de-xx", "EN", "en' OR 1=1"])
def test_the_picker_refuses_an_unknown_language_and_changes_nothing(code):
    client, user = logged_in(ui_language="es")
    response = client.post("/i18n/setlang/", {"language": code, "next": "/profile/"})
    assert response.status_code == 400
    assert "Unknown interface language" in response.content.decode()
    assert COOKIE not in response.cookies
    assert User.objects.get(pk=user.pk).ui_language == "es"


def test_the_picker_refuses_an_unknown_language_from_a_visitor(client):
    response = client.post("/i18n/setlang/", {"language": "klingon", "next": "/"})
    assert response.status_code == 400 and COOKIE not in response.cookies


def test_the_picker_needs_a_post_and_the_csrf_token(client):
    assert client.get("/i18n/setlang/?language=de").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/i18n/setlang/", {"language": "de", "next": "/"})
    assert response.status_code == 403 and COOKIE not in response.cookies


def test_the_picker_does_not_redirect_off_site(client):
    response = client.post("/i18n/setlang/", {"language": "de", "next": "https://evil.example/"})
    assert response.status_code == 302 and not response.url.startswith("https://evil")


# --- the profile setting ---------------------------------------------------------------------------

def settings_post(client, **changes):
    data = {"display_name": "Grace", "preferred_language": "en", "show_on_leaderboard": "on",
            "ui_language": ""}
    return client.post("/profile/settings/", {**data, **changes})


def test_the_profile_offers_follow_and_every_interface_language():
    client, _ = logged_in(ui_language="de")
    html = client.get("/profile/settings/").content.decode()
    select = re.search(r'<select name="ui_language".*?</select>', html, re.S)[0]
    assert re.findall(r'<option value="(\w*)"', select) == ["", "en", "de", "es", "fr"]
    assert re.search(r'<option value="de" selected>', select)


def test_the_profile_saves_the_interface_language_and_the_next_page_uses_it():
    client, user = logged_in(preferred_language="en")
    response = settings_post(client, ui_language="es")
    assert response.status_code == 302
    assert User.objects.get(pk=user.pk).ui_language == "es"
    assert page_language(client.get(response.url)) == "es"


def test_following_the_task_language_clears_the_pickers_cookie():
    client, user = logged_in(preferred_language="de", ui_language="fr")
    client.cookies[COOKIE] = "fr"
    response = settings_post(client, preferred_language="de", ui_language="")
    assert response.status_code == 302 and response.cookies[COOKIE].value == ""
    assert User.objects.get(pk=user.pk).ui_language == ""
    assert page_language(client.get("/profile/")) == "de"


def test_the_profile_refuses_an_unknown_interface_language_and_changes_nothing():
    client, user = logged_in(display_name="Ada", ui_language="de")
    response = settings_post(client, display_name="Changed", ui_language="xx")
    assert response.status_code == 400
    assert re.search(r'<ul class="errorlist"[^>]*id="id_ui_language_error"', response.content.decode())
    saved = User.objects.get(pk=user.pk)
    assert (saved.display_name, saved.ui_language) == ("Ada", "de")


@pytest.mark.parametrize("code", ["xx", "EN", None, 3])
def test_the_service_refuses_an_unknown_interface_language(code):
    user = UserFactory(ui_language="de")
    with pytest.raises(ServiceError) as error:
        services.ui_language_set(user=user, ui_language=code)
    assert error.value.code == "invalid_ui_language"
    assert User.objects.get(pk=user.pk).ui_language == "de"


def test_profile_update_leaves_the_interface_language_alone_unless_given():
    user = UserFactory(ui_language="fr")
    services.profile_update(user=user, display_name="Grace", preferred_language="de", show_on_leaderboard=True)
    assert User.objects.get(pk=user.pk).ui_language == "fr"


def test_a_users_language_does_not_outlive_their_request():
    client, _ = logged_in(preferred_language="fr")
    assert page_language(client.get("/profile/")) == "fr"
    assert translation.get_language() == "en"  # the test's own gettext calls stay English


def test_choosing_the_language_costs_no_query_when_nothing_loads_the_user(django_assert_num_queries):
    client, _ = logged_in(ui_language="de")
    with django_assert_num_queries(0):
        assert client.get("/favicon.ico").status_code == 301


def test_the_sign_in_message_is_in_the_language_of_the_user_who_signed_in():
    """The login request starts anonymous (English here); the message allauth adds after the login is
    already in the user's interface language."""
    from tests.factories import PASSWORD

    user = UserFactory(ui_language="de", preferred_language="en")
    client = Client()
    response = client.post("/accounts/login/", {"login": user.username, "password": PASSWORD}, follow=True)
    assert f"Erfolgreich als {user.username} angemeldet." in response.content.decode()
    assert page_language(response) == "de"
