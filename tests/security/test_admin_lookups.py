"""The admin's changelists filter by their declared filters only, on every registered admin (ours and
the third-party apps'): a query-string lookup through a relation or on an undeclared field would let
staff test other users' secrets one character at a time (issue 21, finding 1), or crash on lookups the
database does not support. Refusals answer 400 and change nothing."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.test import Client, RequestFactory
from django.utils.http import urlencode
from rest_framework.authtoken.models import Token

from tasks.models import Message
from tests.security.admin_probes import changelist_path, declared_filter_queries, refused_lookups, registered_admins

ADMINS = sorted(registered_admins())


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def can_view(model_admin, user) -> bool:
    request = RequestFactory().get(changelist_path(model_admin))
    request.user = user
    return model_admin.has_view_or_change_permission(request)


@pytest.mark.parametrize("role", ["moderator", "superuser"])
@pytest.mark.parametrize("prefix", ADMINS)
def test_every_admin_refuses_lookups_through_relations_and_on_undeclared_fields(world, prefix, role):
    """Every local field and every relation (forward and reverse) of the admin's model, as a user who
    sees the list: 400. A moderator who cannot see the list gets 403 whatever the query string."""
    model_admin = registered_admins()[prefix]
    user = world.users[role]
    client = signed_in(user)
    path = changelist_path(model_admin)
    if not can_view(model_admin, user):
        assert client.get(path, {refused_lookups(model_admin, user)[0]: "x"}).status_code == 403
        return
    wrong = []
    for lookup in refused_lookups(model_admin, user):
        response = client.get(path, {lookup: "x"}, follow=True)  # the flagged queue adds its filter first
        if response.status_code != 400:
            wrong.append(f"?{lookup}=x: {response.status_code}")
    assert not wrong, f"{role} on {path}: lookups not refused:\n" + "\n".join(wrong)


@pytest.mark.parametrize("role", ["moderator", "superuser"])
@pytest.mark.parametrize("prefix", ADMINS)
def test_every_declared_filter_still_filters(world, prefix, role):
    """Every choice the sidebar offers (and the date hierarchy's links) answers the filtered list."""
    model_admin = registered_admins()[prefix]
    user = world.users[role]
    client = signed_in(user)
    path = changelist_path(model_admin)
    if not can_view(model_admin, user):
        return
    wrong = []
    for query in declared_filter_queries(model_admin, user):
        response = client.get(path + query, follow=True)
        final = response.redirect_chain[-1][0] if response.redirect_chain else ""
        if response.status_code != 200 or "e=1" in final:
            wrong.append(f"{query}: {response.status_code} {final}")
    assert not wrong, f"{role} on {path}: declared filters refused:\n" + "\n".join(wrong)


def test_a_moderator_cannot_tell_a_token_prefix_or_an_email_through_the_user_list(world):
    """The attack: one request per character tells whether the superuser's token starts with a prefix
    ("1 user" or "0 users"); the same with an email address."""
    root = world.users["superuser"]
    secret = Token.objects.get_or_create(user=root)[0].key
    wrong_prefix = ("0" if secret[0] != "0" else "1") + secret[1:8]
    client = signed_in(world.users["moderator"])
    for lookup, right, wrong in (("auth_token__key__startswith", secret[:8], wrong_prefix),
                                 ("auth_token__key", secret, "0" * 40),
                                 ("email", root.email, "nobody@example.org"),
                                 ("email__startswith", root.email[:3], "zzz")):
        hit = client.get("/admin/oasst/user/", {lookup: right})
        miss = client.get("/admin/oasst/user/", {lookup: wrong})
        assert hit.status_code == miss.status_code == 400, f"{lookup}: {hit.status_code}, {miss.status_code}"
        assert hit.content.replace(right.encode(), b"") == miss.content.replace(wrong.encode(), b""), lookup


def test_an_unsupported_lookup_is_a_400_not_a_server_error(world):
    """JSON ``contains`` is not supported on SQLite: the open lookup used to raise a 500."""
    response = signed_in(world.users["superuser"]).get("/admin/tasks/message/", {"emojis__contains": "x"})
    assert response.status_code == 400
    assert b"emojis__contains" in response.content


def test_a_refused_lookup_on_an_action_changes_nothing(world):
    """An action posted to a changelist URL carrying a refused lookup is not run."""
    client = signed_in(world.users["superuser"])
    response = client.post("/admin/tasks/message/?text__contains=moon", {
        "action": "delete_with_subtree", "_selected_action": [str(world.answer.pk)]})
    assert response.status_code == 400
    assert not Message.objects.get(pk=world.answer.pk).deleted


def test_the_admins_own_links_into_filtered_lists_are_accepted(world):
    """The moderation pages link into changelists with filters: each link uses a declared filter."""
    client = signed_in(world.users["moderator"])
    page = client.get("/admin/tasks/flaggedmessage/statistics/").content.decode()
    links = {link.replace("&amp;", "&") for link in re.findall(r'href="(/admin/[^"]+/\?[^"]+)"', page)}
    assert links, "the statistics page links to no filtered list"
    for link in links:
        assert client.get(link).status_code == 200, link


def test_raw_id_popups_still_list_their_choices(world):
    """A raw-id field's lookup popup opens the related changelist with `_to_field` and its
    `limit_choices_to` parameters, as the widget builds them."""
    client = signed_in(world.users["superuser"])
    popups = []
    for model_admin in registered_admins().values():
        for name in model_admin.raw_id_fields:
            remote = model_admin.model._meta.get_field(name).remote_field
            related = remote.model._meta
            query = urlencode({"_popup": 1, **ForeignKeyRawIdWidget(remote, model_admin.admin_site).url_parameters()})
            popups.append(f"/admin/{related.app_label}/{related.model_name}/?{query}")
    assert popups
    for popup in popups:
        assert client.get(popup, follow=True).status_code == 200, popup
