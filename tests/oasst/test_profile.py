"""The profile area: its services (settings, API token, data download, account deletion) and pages."""

import json
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.contrib.sessions.models import Session
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from oasst import services
from oasst.errors import Conflict, Forbidden, NotFound, ServiceError
from oasst.models import User
from ranking.models import ContributionEvent, LeaderboardEntry, Ranking, UserScore
from ranking.services import leaderboard_rebuild, user_scores_refresh
from tasks import services as task_services
from tasks.models import EmojiReaction, Message, MessageTree, Review, Task
from tests.factories import PASSWORD, AdminFactory, UserFactory
from tests.oasst.builders import contributions, tree_make
from tests.tasks.builders import reply, review, write_prompt

pytestmark = pytest.mark.django_db

PAGES = ["/profile/", "/profile/settings/", "/profile/token/", "/profile/data/", "/profile/delete/"]


def stored_user(user) -> User:
    return User.objects.get(pk=user.pk)


# --- profile_update ------------------------------------------------------------------------------


def test_profile_update_strips_the_display_name_and_saves_every_field(user):
    services.profile_update(user=user, display_name="  Grace H.  ", preferred_language="de",
                            show_on_leaderboard=False)
    saved = stored_user(user)
    assert (saved.display_name, saved.preferred_language, saved.show_on_leaderboard) == ("Grace H.", "de", False)


@pytest.mark.parametrize(("display_name", "code"), [
    ("", "empty_display_name"),
    ("   \t ", "empty_display_name"),
    ("x" * 65, "display_name_too_long"),
    (None, "invalid_display_name"),
    (42, "invalid_display_name"),
])
def test_profile_update_refuses_a_bad_display_name_and_writes_nothing(user, display_name, code):
    before = stored_user(user)
    with pytest.raises(ServiceError) as refused:
        services.profile_update(user=user, display_name=display_name, preferred_language="de",
                                show_on_leaderboard=False)
    assert refused.value.code == code
    after = stored_user(user)
    assert (after.display_name, after.preferred_language, after.show_on_leaderboard) == (
        before.display_name, before.preferred_language, before.show_on_leaderboard)


def test_profile_update_accepts_a_display_name_of_exactly_64_characters(user):
    services.profile_update(user=user, display_name="x" * 64, preferred_language="en", show_on_leaderboard=True)
    assert stored_user(user).display_name == "x" * 64


@pytest.mark.parametrize("language", ["xx", "EN", "", None])
def test_profile_update_refuses_an_unknown_language(user, language):
    with pytest.raises(ServiceError) as refused:
        services.profile_update(user=user, display_name="Grace", preferred_language=language,
                                show_on_leaderboard=True)
    assert refused.value.code == "invalid_language"
    assert stored_user(user).display_name != "Grace"


def test_profile_update_of_a_deleted_account_is_refused(user):
    services.account_delete(user=user)
    with pytest.raises(Conflict):
        services.profile_update(user=user, display_name="Back", preferred_language="en", show_on_leaderboard=True)


# --- API token -----------------------------------------------------------------------------------


def test_token_rotate_creates_a_token_that_authenticates(user, api_client):
    key = services.api_token_rotate(user=user)
    assert Token.objects.get(user=user).key == key
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get("/api/v1/users/me/").json()["username"] == user.username


def test_token_rotate_replaces_the_old_token(user, api_client):
    old = services.api_token_rotate(user=user)
    new = services.api_token_rotate(user=user)
    assert old != new
    assert list(Token.objects.filter(user=user).values_list("key", flat=True)) == [new]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert api_client.get("/api/v1/users/me/").status_code == 401


def test_token_rotate_for_a_deleted_account_is_refused(user):
    services.account_delete(user=user)
    with pytest.raises(Conflict) as refused:
        services.api_token_rotate(user=user)
    assert refused.value.code == "account_deleted"
    assert not Token.objects.filter(user=user).exists()


def test_token_revoke_removes_the_token(user):
    services.api_token_rotate(user=user)
    services.api_token_revoke(user=user)
    assert not Token.objects.filter(user=user).exists()


def test_token_revoke_without_a_token_is_refused(user):
    other = UserFactory()
    services.api_token_rotate(user=other)
    with pytest.raises(NotFound) as refused:
        services.api_token_revoke(user=user)
    assert refused.value.code == "no_token"
    assert Token.objects.filter(user=other).exists()


# --- user_data_export ----------------------------------------------------------------------------


@pytest.fixture
def community(small_trees, django_capture_on_commit_callbacks):
    """Ada and Bob, who each wrote, reviewed, ranked and reacted; Ada is the one who asks for her data."""
    ada = UserFactory(username="ada", display_name="Ada Lovelace", email="ada@example.org")
    bob = UserFactory(username="bobby", display_name="Bob Secret", email="bob-private@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        ada_prompt = write_prompt(ada, text="Ada asks: how do tides work?")
        review(bob, "label_initial_prompt", values={"spam": 0, "lang_mismatch": 0})
        bob_prompt = write_prompt(bob, text="Bob's very private question about his neighbour?")
        ada_review = review(ada, "label_initial_prompt", values={"spam": 0, "lang_mismatch": 0})
    bob_reply = reply(bob, "Bob answers: the moon pulls the water.")
    task_services.emoji_set(user=ada, message_id=bob_reply.pk, emoji="+1", op="add")
    task_services.emoji_set(user=bob, message_id=ada_prompt.pk, emoji="heart_eyes", op="add")
    Ranking.objects.create(parent=bob_prompt, user=ada, ranking=[str(bob_reply.pk)], agreement=1.0)
    Ranking.objects.create(parent=ada_prompt, user=bob, ranking=[str(bob_reply.pk)])
    Token.objects.create(user=ada)
    Token.objects.create(user=bob)
    SocialAccount.objects.create(user=ada, provider="github", uid="ada-gh-1")
    SocialAccount.objects.create(user=bob, provider="github", uid="bob-gh-secret")
    user_scores_refresh(user=ada)
    user_scores_refresh(user=bob)
    return {"ada": ada, "bob": bob, "ada_prompt": ada_prompt, "bob_prompt": bob_prompt, "bob_reply": bob_reply,
            "ada_review": ada_review}


def test_export_holds_everything_stored_about_the_user(community):
    ada = community["ada"]
    data = services.user_data_export(user=ada)
    assert data["format"] == "oasst-user-data"
    account = data["account"]
    assert (account["username"], account["email"], account["display_name"]) == ("ada", "ada@example.org",
                                                                                  "Ada Lovelace")
    assert account["api_token"]["exists"] is True
    assert data["email_addresses"] == [{"email": "ada@example.org", "verified": True, "primary": True}]
    assert [(s["provider"], s["uid"]) for s in data["social_accounts"]] == [("github", "ada-gh-1")]

    [message] = data["messages"]
    prompt = community["ada_prompt"]
    assert (message["id"], message["tree_id"], message["text"]) == (prompt.pk, prompt.tree_id, prompt.text)
    assert message["tree_state"] == MessageTree.objects.get(pk=prompt.tree_id).state
    assert message["emojis"] == {"heart_eyes": 1}

    [ada_review] = data["reviews"]
    assert ada_review["message_id"] == community["bob_prompt"].pk
    assert ada_review["labels"] == {"spam": 0, "lang_mismatch": 0}
    assert [r["parent_id"] for r in data["rankings"]] == [community["bob_prompt"].pk]
    assert [(r["message_id"], r["emoji"]) for r in data["reactions"]] == [(community["bob_reply"].pk, "+1")]
    assert {t["id"] for t in data["tasks"]} == set(Task.objects.filter(user=ada).values_list("pk", flat=True))
    assert set(data["scores"]) == {"day", "week", "month", "total"}
    assert data["scores"]["total"]["score"] == UserScore.objects.get(user=ada, frame="total").score
    assert len(data["contribution_events"]) == ContributionEvent.objects.filter(user=ada).count() > 0


def test_export_holds_nothing_of_other_users(community):
    ada, bob = community["ada"], community["bob"]
    text = json.dumps(services.user_data_export(user=ada), cls=DjangoJSONEncoder)
    for secret in ["bobby", "Bob Secret", "bob-private@example.org", "bob-gh-secret",
                   community["bob_prompt"].text, community["bob_reply"].text, Token.objects.get(user=bob).key]:
        assert secret not in text
    assert "heart_eyes" in text  # a count on her message, not who reacted
    assert Token.objects.get(user=ada).key not in text  # a credential is not data to download


# --- account_delete ------------------------------------------------------------------------------


def test_account_delete_anonymises_the_user_everywhere_and_keeps_the_messages(community, client):
    ada, bob = community["ada"], community["bob"]
    client.force_login(ada)
    other_client = Client()
    other_client.force_login(bob)
    Ranking.objects.filter(user=ada).update(created_at=timezone.now())
    leaderboard_rebuild(frame="total")
    assert LeaderboardEntry.objects.filter(user=ada).exists()
    messages_before = list(Message.objects.filter(author=ada).values_list("pk", "text"))
    reviews_before = Review.objects.filter(user=ada).count()

    services.account_delete(user=ada)

    saved = stored_user(ada)
    assert saved.username.startswith("deleted-") and len(saved.username) == len("deleted-") + 16
    assert (saved.email, saved.display_name, saved.first_name, saved.last_name) == ("", "", "", "")
    assert not saved.has_usable_password() and not saved.is_active and not saved.show_on_leaderboard
    assert ada.username == saved.username  # the caller's object is anonymised too
    assert not EmailAddress.objects.filter(user=ada).exists()
    assert not EmailAddress.objects.filter(email="ada@example.org").exists()
    assert not SocialAccount.objects.filter(user=ada).exists()
    assert not Token.objects.filter(user=ada).exists()
    assert not UserScore.objects.filter(user=ada).exists()
    assert not LeaderboardEntry.objects.filter(user=ada).exists()
    assert not User.objects.filter(username="ada").exists()
    assert not User.objects.filter(email="ada@example.org").exists()
    assert list(Message.objects.filter(author=ada).values_list("pk", "text")) == messages_before
    assert Review.objects.filter(user=ada).count() == reviews_before
    assert client.get("/profile/").status_code == 302  # her session is gone
    assert other_client.get("/profile/").status_code == 200  # Bob's is not
    assert SocialAccount.objects.filter(user=bob).exists() and Token.objects.filter(user=bob).exists()

    leaderboard_rebuild(frame="total")
    assert not LeaderboardEntry.objects.filter(user=ada).exists()
    assert not client.login(username="ada", password=PASSWORD)
    assert not client.login(username=saved.username, password=PASSWORD)


def test_account_delete_gives_back_the_work_the_user_held(small_trees, django_capture_on_commit_callbacks):
    author, reviewer = UserFactory(), UserFactory()
    prompt = write_prompt(author)
    task = task_services.task_request(user=reviewer, task_type="label_initial_prompt", lang="en")
    assert Message.objects.get(pk=prompt.pk).reviews_pending == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.account_delete(user=reviewer)
    assert Task.objects.get(pk=task.pk).expired
    assert Message.objects.get(pk=prompt.pk).reviews_pending == 0


def test_account_delete_twice_is_refused(user):
    services.account_delete(user=user)
    username = stored_user(user).username
    with pytest.raises(Conflict) as refused:
        services.account_delete(user=user)
    assert refused.value.code == "account_deleted"
    assert stored_user(user).username == username


def test_administrator_cannot_delete_their_own_account(db):
    admin = AdminFactory(username="root")
    with pytest.raises(Forbidden) as refused:
        services.account_delete(user=admin)
    assert refused.value.code == "admin_account"
    saved = stored_user(admin)
    assert saved.username == "root" and saved.is_active and saved.has_usable_password()


# --- pages ---------------------------------------------------------------------------------------


@pytest.fixture
def logged_in(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_token(client, path: str) -> str:
    client.get(path)
    return client.cookies["csrftoken"].value


@pytest.mark.parametrize("path", PAGES)
def test_profile_pages_require_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("path", PAGES)
def test_profile_pages_render(logged_in, path):
    assert logged_in.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/profile/settings/", "/profile/token/", "/profile/delete/"])
def test_profile_forms_refuse_a_post_without_the_csrf_token(user, logged_in, path):
    response = logged_in.post(path, {"display_name": "X", "preferred_language": "en", "action": "rotate",
                                     "username": user.username})
    assert response.status_code == 403
    saved = stored_user(user)
    assert saved.is_active and saved.display_name != "X"
    assert not Token.objects.filter(user=user).exists()


def test_profile_page_links_from_the_header(logged_in, user):
    assert 'href="/profile/"' in logged_in.get("/profile/settings/").content.decode()


def test_settings_form_saves_and_resets_the_session_language(user, logged_in):
    token = csrf_token(logged_in, "/profile/settings/")
    session = logged_in.session
    session["task_lang"] = "fr"
    session.save()
    response = logged_in.post("/profile/settings/", {"display_name": " Grace ", "preferred_language": "de",
                                                     "show_on_leaderboard": "", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response.url == "/profile/settings/"
    saved = stored_user(user)
    assert (saved.display_name, saved.preferred_language, saved.show_on_leaderboard) == ("Grace", "de", False)
    assert "task_lang" not in logged_in.session
    assert "Your settings are saved." in logged_in.get(response.url).content.decode()


@pytest.mark.parametrize(("data", "field"), [
    ({"display_name": "   ", "preferred_language": "en"}, "display_name"),
    ({"display_name": "x" * 65, "preferred_language": "en"}, "display_name"),
    ({"display_name": "Grace", "preferred_language": "xx"}, "preferred_language"),
])
def test_settings_form_shows_errors_and_saves_nothing(user, logged_in, data, field):
    token = csrf_token(logged_in, "/profile/settings/")
    response = logged_in.post("/profile/settings/", {**data, "csrfmiddlewaretoken": token})
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert 'class="errorlist' in response.content.decode()
    assert stored_user(user).display_name == user.display_name


def test_token_page_shows_a_new_key_once(user, logged_in):
    page = logged_in.get("/profile/token/").content.decode()
    assert "You have no API token." in page
    token = logged_in.cookies["csrftoken"].value
    response = logged_in.post("/profile/token/", {"action": "rotate", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    key = Token.objects.get(user=user).key
    shown = logged_in.get("/profile/token/")
    assert key in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    again = logged_in.get("/profile/token/").content.decode()
    assert key not in again and "You have a token" in again


def test_token_page_revokes_and_reports_a_revoke_without_a_token(user, logged_in):
    Token.objects.create(user=user)
    token = csrf_token(logged_in, "/profile/token/")
    logged_in.post("/profile/token/", {"action": "revoke", "csrfmiddlewaretoken": token})
    assert not Token.objects.filter(user=user).exists()
    response = logged_in.post("/profile/token/", {"action": "revoke", "csrfmiddlewaretoken": token}, follow=True)
    assert "You have no API token to revoke." in response.content.decode()
    assert logged_in.post("/profile/token/", {"action": "steal", "csrfmiddlewaretoken": token}).status_code == 400


def test_data_download_is_a_json_attachment(user, logged_in):
    response = logged_in.get("/profile/data/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith(f'attachment; filename="oasst-data-{user.username}-')
    assert json.loads(response.content)["account"]["username"] == user.username
    assert logged_in.post("/profile/data/").status_code in (403, 405)


def test_delete_page_requires_the_exact_username(user, logged_in):
    token = csrf_token(logged_in, "/profile/delete/")
    response = logged_in.post("/profile/delete/", {"username": user.username.upper(), "csrfmiddlewaretoken": token})
    assert response.status_code == 400
    assert "That is not your username." in response.content.decode()
    assert stored_user(user).is_active


def test_delete_page_deletes_logs_out_and_says_so_on_the_home_page(user, logged_in):
    message = Message.objects.create(tree=tree_make(), author=user, role="prompter", text="Mine", lang="en")
    token = csrf_token(logged_in, "/profile/delete/")
    response = logged_in.post("/profile/delete/", {"username": user.username, "csrfmiddlewaretoken": token},
                              follow=True)
    assert response.redirect_chain[0] == ("/", 302)
    assert "Your account is deleted." in response.content.decode()
    assert not response.context["user"].is_authenticated
    assert not stored_user(user).is_active
    assert Message.objects.get(pk=message.pk).author_id == user.pk


def test_delete_page_shows_the_refusal_for_an_administrator(db):
    admin = AdminFactory()
    client = Client()
    client.force_login(admin)
    response = client.post("/profile/delete/", {"username": admin.username})
    assert response.status_code == 400
    assert "ask another administrator" in response.content.decode()
    assert stored_user(admin).is_active


# --- the profile page: stats and contributions ---------------------------------------------------


def test_profile_page_query_count_does_not_grow_with_the_messages(user, logged_in, django_assert_num_queries):
    # session, user, score aggregate (read, not stored: a GET writes nothing), leaderboard ranks, contribution
    # summary, the page of messages
    with django_assert_num_queries(6):
        assert logged_in.get("/profile/").status_code == 200
    contributions(user, 30)
    ContributionEvent.objects.bulk_create([ContributionEvent(user=user, kind=kind, created_at=timezone.now())
                                           for kind in ("prompt", "assistant_reply", "ranked_1st")])
    with django_assert_num_queries(6):
        response = logged_in.get("/profile/")
    assert response.status_code == 200
    assert len(response.context["rows"]) == 20


def test_profile_page_shows_points_per_frame_and_the_breakdown(user, logged_in):
    now = timezone.now()
    ContributionEvent.objects.bulk_create([
        ContributionEvent(user=user, kind="assistant_reply", created_at=now),
        ContributionEvent(user=user, kind="ranked_1st", created_at=now - timedelta(days=3)),
    ])
    response = logged_in.get("/profile/")
    frames = {frame["key"]: frame["score"] for frame in response.context["stats"]["frames"]}
    assert frames == {"day": 4, "week": 13, "month": 13, "total": 13}
    rows = {str(row["title"]): [cell["points"] for cell in row["cells"]]
            for row in response.context["stats"]["breakdown"]}
    assert rows == {"Assistant replies written": [4, 4, 4, 4], "Replies ranked 1st": [0, 9, 9, 9]}
    page = response.content.decode()
    assert "Where your points come from" in page and "Level 3" in page


def test_profile_page_lists_contributions_with_status_rank_and_tree(user, logged_in):
    contributions(user, 3)
    page = logged_in.get("/profile/").content.decode()
    assert "accepted" in page and "in review" in page and "rejected" in page
    assert "ranked #2" in page  # rank 1 is the second place
    assert "3 of 12 messages accepted (4 in all)" in page
    assert "complete" in page


def test_profile_contributions_page_in_place_and_filter(user, logged_in, django_assert_num_queries):
    contributions(user, 30)
    with django_assert_num_queries(4):  # session, user, count, page
        fragment = logged_in.get("/profile/?page=2", headers={"HX-Request": "true", "HX-Target": "contributions"})
    body = fragment.content.decode()
    assert "HX-Request" in fragment["Vary"]
    assert not body.lstrip().startswith("<!DOCTYPE") and 'id="contributions"' in body
    assert len(fragment.context["rows"]) == 10
    prompts = logged_in.get("/profile/?show=prompts")
    assert len(prompts.context["rows"]) == 10 and all(not row["message"].parent_id for row in prompts.context["rows"])
    assert len(logged_in.get("/profile/?show=nonsense&page=99").context["rows"]) == 10  # last page of all


def test_profile_page_shows_only_the_users_own_messages_as_text(user, logged_in):
    Message.objects.create(tree=tree_make(), author=UserFactory(), role="prompter", text="Not yours", lang="en")
    Message.objects.create(tree=tree_make(), author=user, role="prompter", lang="en",
                           text='<script>alert(1)</script><img src=x onerror="alert(2)">')
    page = logged_in.get("/profile/").content.decode()
    assert "Not yours" not in page
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_emoji_reactions_of_a_deleted_user_still_count(community):
    bob_reply = community["bob_reply"]
    services.account_delete(user=community["ada"])
    assert EmojiReaction.objects.filter(message=bob_reply).count() == 1
    assert Message.objects.get(pk=bob_reply.pk).emojis == {"+1": 1}


def test_sessions_of_other_users_survive_a_deletion(user):
    other = UserFactory()
    mine, theirs = Client(), Client()
    mine.login(username=user.username, password=PASSWORD)
    theirs.login(username=other.username, password=PASSWORD)
    assert Session.objects.count() == 2
    services.account_delete(user=user)
    assert Session.objects.count() == 1
    assert theirs.get("/profile/").status_code == 200
