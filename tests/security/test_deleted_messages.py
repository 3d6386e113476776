"""A deleted message answers exactly as an unknown id does, on every route that takes a message id
(pages, htmx fragments, API), and nothing is written: not a report (which reopened the flag), not a
reaction. The routes come from the URL resolver, so a new one fails here until it has a probe.
Issue 21, finding 8."""

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from oasst.models import ModerationEvent
from tasks import services
from tasks.models import EmojiReaction, FlaggedMessage, Message
from tests.conftest import token_client
from tests.factories import AdminFactory, UserFactory
from tests.tasks.builders import reply_to, review, write_prompt

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
# route -> the requests a contributor sends to it: (method, path suffix, body, extra headers)
PROBES = {
    "messages/<uuid:message_id>/": [("get", "", None, {})],
    "messages/<uuid:message_id>/emoji/": [("post", "", {"add_emoji": "+1"}, {}),
                                          ("post", "", {"add_emoji": "+1"}, HTMX),
                                          ("post", "", {"remove_emoji": "+1"}, HTMX)],
    "messages/<uuid:message_id>/report/": [("post", "", {"reason": "rude"}, {}),
                                           ("post", "", {"reason": "rude"}, HTMX)],
    "api/v1/messages/<uuid:message_id>/": [("get", "", None, {})],
    "api/v1/messages/<uuid:message_id>/tree/": [("get", "", None, {})],
    "api/v1/messages/<uuid:message_id>/emoji/": [("post", "", {"emoji": "+1"}, {}),
                                                 ("post", "", {"emoji": "+1", "op": "remove"}, {})],
    "api/v1/messages/<uuid:message_id>/report/": [("post", "", {"reason": "rude"}, {})],
    "api/v1/moderation/messages/<uuid:message_id>/edit/": [("post", "", {"text": "edited"}, {})],
    "api/v1/moderation/messages/<uuid:message_id>/<str:action>/": [
        ("post", action, {"reason": "probe"}, {}) for action in ("delete", "undelete", "spam", "flag")],
}
# A contributor's answer on the visible message: proves each probe reaches the view it means to.
VISIBLE = {"messages/<uuid:message_id>/": 200, "messages/<uuid:message_id>/emoji/": (200, 302),
           "messages/<uuid:message_id>/report/": 200, "api/v1/messages/<uuid:message_id>/": 200,
           "api/v1/messages/<uuid:message_id>/tree/": 200, "api/v1/messages/<uuid:message_id>/emoji/": 200,
           "api/v1/messages/<uuid:message_id>/report/": 201,
           "api/v1/moderation/messages/<uuid:message_id>/edit/": 403,
           "api/v1/moderation/messages/<uuid:message_id>/<str:action>/": 403}


def message_routes(patterns=None, prefix: str = "") -> list[str]:
    """Every route of the site whose path carries a message id."""
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += message_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and "message_id" in entry.pattern.converters:
            found.append(route)
    return found


def test_every_route_with_a_message_id_has_a_probe():
    routes = message_routes()
    assert set(routes) == set(PROBES), "add a probe for each new route that takes a message id"


@pytest.fixture
def community(small_trees, tree_settings):
    tree_settings(goal_tree_size=10)
    admin = AdminFactory()
    prompt = write_prompt(UserFactory(), text="How do tides work?")
    review(UserFactory(), "label_initial_prompt")
    services.lottery_activate(lang="en")
    visible = reply_to(UserFactory(), prompt, "The moon pulls the sea toward it.")
    deleted = reply_to(UserFactory(), prompt, "Cheap watches at spam.example")
    fan = UserFactory()
    services.emoji_set(user=fan, message_id=deleted.pk, emoji="+1", op="add")
    services.message_report(user=fan, message_id=deleted.pk, reason="spam")
    services.flag_resolve(actor=admin, flag_id=FlaggedMessage.objects.get(message=deleted).pk, decision="delete")
    return prompt, visible, Message.objects.get(pk=deleted.pk)


def send(client, api, route: str, message_id, probe):
    method, suffix, body, headers = probe
    path = "/" + route.replace("<uuid:message_id>", str(message_id)).replace("<str:action>", suffix)
    if api:
        return getattr(api, method)(path, body, format="json", **headers)
    return getattr(client, method)(path, body, **headers)


def normalised(response, message_id) -> tuple:
    """Status and body with the id, and what differs on every response (CSRF tokens, nonces), blanked."""
    body = b"".join(response.streaming_content) if response.streaming else response.content
    text = body.decode().replace(str(message_id), "<id>")
    text = re.sub(r'(csrfmiddlewaretoken" value=|"X-CSRFToken": ?|nonce=)"[^"]*"', r"\1", text)
    return response.status_code, response.get("Content-Type"), response.get("Location", "").replace(
        str(message_id), "<id>"), text


def test_a_deleted_message_answers_like_an_unknown_id_on_every_route_and_nothing_is_written(client, community):
    _, visible, deleted = community
    contributor = UserFactory()
    client.force_login(contributor)
    api = token_client(contributor)
    flag_before = FlaggedMessage.objects.values("reports", "reasons", "processed").get(message=deleted)
    events_before = ModerationEvent.objects.count()
    unknown = uuid.uuid4()
    differences = []
    for route in message_routes():
        for probe in PROBES[route]:
            on_api = route.startswith("api/")
            as_unknown = normalised(send(client, api if on_api else None, route, unknown, probe), unknown)
            as_deleted = normalised(send(client, api if on_api else None, route, deleted.pk, probe), deleted.pk)
            if as_deleted != as_unknown:
                differences.append(f"{probe[0].upper()} {route} {probe[1:]}:\n  deleted {as_deleted[:3]} "
                                   f"{as_deleted[3][:300]!r}\n  unknown {as_unknown[:3]} {as_unknown[3][:300]!r}")
    assert not differences, "\n".join(differences)
    assert FlaggedMessage.objects.values("reports", "reasons", "processed").get(message=deleted) == flag_before
    assert not EmojiReaction.objects.filter(user=contributor).exists()
    assert Message.objects.get(pk=deleted.pk).emojis == deleted.emojis
    assert ModerationEvent.objects.count() == events_before


def test_the_probes_reach_their_views_on_a_visible_message(client, community):
    _, visible, _ = community
    for route in message_routes():
        contributor = UserFactory()  # one each: the page and the API report routes take one report per user
        client.force_login(contributor)
        api = token_client(contributor)
        on_api = route.startswith("api/")
        response = send(client, api if on_api else None, route, visible.pk, PROBES[route][0])
        expected = VISIBLE[route]
        assert response.status_code in (expected if isinstance(expected, tuple) else (expected,)), route


def test_an_unknown_and_a_deleted_message_answer_404_message_not_found_on_the_api(community):
    _, _, deleted = community
    api = token_client(UserFactory())
    for path, body in ((f"/api/v1/messages/{deleted.pk}/", None), (f"/api/v1/messages/{deleted.pk}/tree/", None),
                       (f"/api/v1/messages/{deleted.pk}/report/", {"reason": "rude"}),
                       (f"/api/v1/messages/{deleted.pk}/emoji/", {"emoji": "+1"})):
        response = api.post(path, body, format="json") if body else api.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "No such message.", "code": "message_not_found"}, path
