"""Who may open what: every URL of the project against every role, as one table.

The table is keyed by the URL resolver's route strings, so a new URL pattern makes
`test_every_url_pattern_is_in_the_matrix` fail until its row says who may use it. Each row holds
one or more probes (a request built from realistic objects: another user's task, a visible and a
deleted message, a tree, a flag...) and the expected answer per role: a status code, or a
redirect (to the site's log-in, to the admin's log-in, to the terms, or to a path).

Each admin changelist's row also probes its query-string filters (one its sidebar offers, and
lookups through a relation or on an undeclared field, refused with 400). A second table, ACTIONS,
holds every bulk action of every admin, so a new action makes `test_every_admin_action_is_in_the_matrix`
fail until its row says who may run it.

Every probe runs inside a savepoint that is rolled back, so a moderation action or a submission
made by one role does not change what the next role sees.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from django.contrib import messages
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django_celery_beat.models import PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from oasst.models import ModerationEvent, User
from tasks import services
from tasks.models import TreeState
from tests.security.admin_probes import declared_filter_queries, refused_lookup_examples, registered_admins

ROLES = ("anonymous", "no_terms", "contributor", "banned", "staff", "moderator", "researcher", "superuser")
SIGNED_IN = ROLES[1:]
NON_STAFF = ("no_terms", "contributor", "banned")

# Redirect outcomes (any other outcome is a status code).
LOGIN = "redirect:/accounts/login/?next="
ADMIN_LOGIN = "redirect:/admin/login/?next="
TERMS = "redirect:/terms/?next="


def redirect(to: str) -> str:
    return f"redirect:{to}"


def outcomes(default, **per_role) -> dict:
    unknown = set(per_role) - set(ROLES)
    assert not unknown, f"unknown roles {unknown}"
    return {role: per_role.get(role, default) for role in ROLES}


def api(default, **per_role) -> dict:
    """An API endpoint: anonymous requests get 401."""
    return outcomes(default, anonymous=401, **per_role)


def api_work(ok, **per_role) -> dict:
    """An API endpoint for contributing: refused to users who have not accepted the terms or are banned."""
    return api(ok, no_terms=403, banned=403, **per_role)


def api_moderation(ok, **per_role) -> dict:
    """The moderation API: moderators and superusers only."""
    return api(403, moderator=ok, superuser=ok, **per_role)


def page(ok, **per_role) -> dict:
    """A page behind the site's log-in."""
    return outcomes(ok, anonymous=LOGIN, **per_role)


def work_page(ok, **per_role) -> dict:
    """A page behind the log-in and the terms."""
    return page(ok, no_terms=TERMS, **per_role)


def admin(moderator, superuser=200, *, staff=403, researcher=None) -> dict:
    """An admin page: non-staff are sent to the admin's log-in; staff without a group have no
    permission; researchers are staff with the export permission only."""
    return outcomes(ADMIN_LOGIN, staff=staff, moderator=moderator, superuser=superuser,
                    researcher=staff if researcher is None else researcher)


def admin_model(*, moderator_view: bool, researcher_view: bool = False, add: int | None = None,
                change_page: int | None = None, delete: int | None = None, superuser_view: int = 200) -> dict:
    """The five standard URLs of a registered model, for rows built by `model_rows`."""
    seen = 200 if moderator_view else 403
    researcher = 200 if researcher_view else 403
    return {
        "changelist": admin(seen, superuser_view, researcher=researcher),
        "add": admin(403 if add is None else add, 200 if add is None else add),
        "history": admin(seen, superuser_view, researcher=researcher),
        "delete": admin(403, 200 if delete is None else delete),
        "change": admin(seen if change_page is None else change_page, superuser_view, researcher=researcher),
    }


@dataclass
class Probe:
    method: str
    path: object  # a path, or a function of the world giving one
    expect: dict
    data: object = None  # a body, or a function of the world giving one
    note: str = ""


@dataclass
class Row:
    route: str
    probes: list[Probe] = field(default_factory=list)


def get(path, expect, note="") -> Probe:
    return Probe("get", path, expect, note=note)


def post(path, expect, data=None, note="") -> Probe:
    return Probe("post", path, expect, data={} if data is None else data, note=note)


# --- The world: one realistic community per test, in tests/security/conftest.py ----------------------


def filter_probes(prefix: str, query: str, seen: dict, lookups: tuple[str, ...]) -> list[Probe]:
    """The changelist's query-string filters: one its sidebar offers answers as the list does; a lookup
    through a relation or on a field no filter declares is refused with 400 to whoever sees the list
    (see test_admin_lookups, which tries them all)."""
    model_admin = registered_admins()[prefix]
    path = f"/admin/{prefix}/{query or '?'}"
    refused = {role: 400 if answer == 200 else answer for role, answer in seen.items()}

    def declared(w) -> str:
        return f"/admin/{prefix}/" + declared_filter_queries(model_admin, w.users["superuser"])[0]

    def undeclared(w, which: int) -> str:
        return path + "&" + refused_lookup_examples(model_admin, w.users["superuser"])[which] + "=x"

    probes = [get(declared, seen, note="a declared filter")] if model_admin.list_filter else []
    probes += [get(lambda w: undeclared(w, 0), refused, note="a lookup through a relation"),
               get(lambda w: undeclared(w, 1), refused, note="a lookup on an undeclared field")]
    return probes + [get(f"{path}&{lookup}", refused) for lookup in lookups]


def model_rows(prefix: str, pk, outcome: dict, *, query: str = "", lookups: tuple[str, ...] = ()) -> list[Row]:
    """The standard admin URLs of one registered model, the object ones on a real row, and its
    changelist's query-string filters."""
    base = f"admin/{prefix}/"
    obj = "<path:object_id>/"

    def at(w) -> str:
        return f"/admin/{prefix}/{pk(w)}/"

    return [
        Row(base, [get(f"/{base}{query}", outcome["changelist"]),
                   *filter_probes(prefix, query, outcome["changelist"], lookups)]),
        Row(f"{base}add/", [get(f"/{base}add/", outcome["add"])]),
        Row(f"{base}{obj}history/", [get(lambda w: at(w) + "history/", outcome["history"])]),
        Row(f"{base}{obj}delete/", [get(lambda w: at(w) + "delete/", outcome["delete"])]),
        Row(f"{base}{obj}change/", [get(lambda w: at(w) + "change/", outcome["change"])]),
        # The bare object URL redirects to its change page (after the admin's own log-in check).
        Row(f"{base}{obj}", [get(at, outcomes(redirect(f"/admin/{prefix}/"), **{r: ADMIN_LOGIN for r in
                                                                             ("anonymous", *NON_STAFF)}))]),
    ]


def flag_resolve(decision):
    return lambda w: f"/admin/tasks/flaggedmessage/{w.flag.pk}/resolve/{decision}/"


MATRIX: list[Row] = [
    # --- Pages ---------------------------------------------------------------------------------
    Row("", [get("/", outcomes(redirect("/dashboard/"), anonymous=200))]),
    Row("terms/", [get("/terms/", outcomes(200)),
                   post("/terms/", outcomes(400, anonymous=200), data={"accept": ""},
                        note="accepting needs a signed-in user and the ticked box")]),
    Row("language/", [post("/language/", page(redirect("/")), data={"lang": "de", "next": "https://evil.example/"},
                           note="an off-site next is replaced by /")]),
    Row("dashboard/", [get("/dashboard/", work_page(200))]),
    Row("dashboard/available/", [get("/dashboard/available/", work_page(200))]),
    Row("tasks/new/", [post("/tasks/new/", work_page(redirect("/tasks/"), banned=403),
                            data={"type": "initial_prompt"})]),
    Row("tasks/<uuid:task_id>/", [get(lambda w: f"/tasks/{w.others_task.pk}/", work_page(404),
                                      note="another user's pending task")]),
    Row("tasks/<uuid:task_id>/submit/", [post(lambda w: f"/tasks/{w.others_task.pk}/submit/", work_page(404),
                                              data={"label-spam": "0"}, note="another user's task"),
                                         get(lambda w: f"/tasks/{w.others_task.pk}/submit/", work_page(404),
                                             note="another user's task")]),
    Row("tasks/<uuid:task_id>/done/", [get(lambda w: f"/tasks/{w.others_task.pk}/done/", work_page(404),
                                           note="another user's task")]),
    Row("tasks/<uuid:task_id>/skip/", [post(lambda w: f"/tasks/{w.others_task.pk}/skip/", work_page(404),
                                            note="another user's task")]),
    Row("preview/", [post("/preview/", page(200), data={"text": "*hi*"})]),
    Row("lang-check/", [post("/lang-check/", page(200), data={"text": "Hello there", "lang": "en"})]),
    Row("messages/<uuid:message_id>/report/", [
        post(lambda w: f"/messages/{w.answer.pk}/report/", page(200, no_terms=403, banned=403),
             data={"reason": "rude"}),
        post(lambda w: f"/messages/{w.spam.pk}/report/", page(404, no_terms=403, banned=403),
             data={"reason": "rude"}, note="a deleted message answers as if absent (issue 21, finding 8)"),
    ]),
    Row("messages/", [get("/messages/", page(200))]),
    Row("messages/<uuid:message_id>/", [
        get(lambda w: f"/messages/{w.answer.pk}/", page(200)),
        get(lambda w: f"/messages/{w.spam.pk}/", page(404), note="a deleted message"),
    ]),
    Row("messages/<uuid:message_id>/emoji/", [
        post(lambda w: f"/messages/{w.answer.pk}/emoji/", page(redirect("/messages/")), data={"add_emoji": "+1"}),
    ]),
    Row("favicon.ico", [get("/favicon.ico", outcomes(301))]),
    Row("i18n/setlang/", [post("/i18n/setlang/", outcomes(redirect("/")), data={"language": "de", "next": "https://evil.example/"},
                               note="anyone picks the interface language; an off-site next is replaced by /"),
                          post("/i18n/setlang/", outcomes(400), data={"language": "xx", "next": "/"},
                               note="an unknown language is refused")]),
    Row("profile/", [get("/profile/", page(200))]),
    Row("profile/settings/", [get("/profile/settings/", page(200))]),
    Row("profile/token/", [get("/profile/token/", page(200))]),
    Row("profile/data/", [get("/profile/data/", page(200))]),
    Row("profile/delete/", [get("/profile/delete/", page(200))]),
    Row("profile/logout-everywhere/", [post("/profile/logout-everywhere/", page(redirect("/accounts/login/")))]),
    Row("leaderboard/", [get("/leaderboard/", outcomes(200))]),
    Row("leaderboard/<slug:frame>/", [get("/leaderboard/total/", outcomes(200)),
                                      get("/leaderboard/forever/", outcomes(404))]),
    # --- Accounts (django-allauth) -------------------------------------------------------------
    Row("accounts/login/", [get("/accounts/login/", outcomes(redirect("/dashboard/"), anonymous=200))]),
    Row("accounts/logout/", [post("/accounts/logout/", outcomes(redirect("/")))]),
    Row("accounts/inactive/", [get("/accounts/inactive/", outcomes(200))]),
    Row("accounts/signup/", [get("/accounts/signup/", outcomes(redirect("/dashboard/"), anonymous=200))]),
    Row("accounts/reauthenticate/", [get("/accounts/reauthenticate/", page(200))]),
    Row("accounts/email/", [get("/accounts/email/", page(200))]),
    Row("accounts/confirm-email/", [get("/accounts/confirm-email/", outcomes(200))]),
    Row("accounts/password/change/", [get("/accounts/password/change/", page(200))]),
    Row("accounts/password/set/", [get("/accounts/password/set/", page(redirect("/accounts/password/change/")))]),
    Row("accounts/password/reset/", [get("/accounts/password/reset/", outcomes(200))]),
    Row("accounts/login/code/confirm/", [get("/accounts/login/code/confirm/",
                                             outcomes(redirect("/dashboard/"), anonymous=redirect("/accounts/login/")),
                                             note="log-in by code is off")]),
    Row("accounts/^confirm-email/(?P<key>[-:\\w]+)/$", [
        get(lambda w: f"/accounts/confirm-email/{w.confirm_key}/", outcomes(200),
            note="showing the confirmation page does not confirm (a POST does)")]),
    Row("accounts/password/reset/key/done/", [get("/accounts/password/reset/key/done/", outcomes(200))]),
    Row("accounts/^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$", [
        get(lambda w: f"/accounts/password/reset/key/{w.reset}/", outcomes(redirect("/accounts/password/reset/key/")),
            note="the key moves into the session, then the form")]),
    Row("accounts/password/reset/done/", [get("/accounts/password/reset/done/", outcomes(200))]),
    Row("accounts/3rdparty/login/cancelled/", [get("/accounts/3rdparty/login/cancelled/", outcomes(200))]),
    Row("accounts/3rdparty/login/error/", [get("/accounts/3rdparty/login/error/", outcomes(401))]),
    Row("accounts/3rdparty/signup/", [get("/accounts/3rdparty/signup/", outcomes(redirect("/accounts/login/")))]),
    Row("accounts/3rdparty/", [get("/accounts/3rdparty/", page(200))]),
    # allauth's old social URLs answer a permanent redirect to their 3rdparty/ successors.
    Row("accounts/social/login/cancelled/", [get("/accounts/social/login/cancelled/", outcomes(301))]),
    Row("accounts/social/login/error/", [get("/accounts/social/login/error/", outcomes(301))]),
    Row("accounts/social/signup/", [get("/accounts/social/signup/", outcomes(301))]),
    Row("accounts/social/connections/", [get("/accounts/social/connections/", outcomes(301))]),
    # --- REST API v1 ---------------------------------------------------------------------------
    Row("api/v1/schema/", [get("/api/v1/schema/", outcomes(200))]),
    Row("api/v1/docs/", [get("/api/v1/docs/", outcomes(200))]),
    Row("api/v1/auth/token/", [post("/api/v1/auth/token/", outcomes(400), data={"username": "author",
                                                                                "password": "wrong"})]),
    Row("api/v1/users/me/", [get("/api/v1/users/me/", api(200))]),
    Row("api/v1/users/me/accept-tos/", [post("/api/v1/users/me/accept-tos/", api(200))]),
    Row("api/v1/leaderboard/<str:frame>/", [get("/api/v1/leaderboard/total/", api(200)),
                                            get("/api/v1/leaderboard/forever/", api(404))]),
    Row("api/v1/trollboard/<str:frame>/", [get("/api/v1/trollboard/total/", api_moderation(200))]),
    Row("api/v1/tasks/", [post("/api/v1/tasks/", api_work(201), data={"type": "initial_prompt", "lang": "en"})]),
    Row("api/v1/tasks/available/", [get("/api/v1/tasks/available/?lang=en", api_work(200))]),
    Row("api/v1/tasks/<uuid:task_id>/", [get(lambda w: f"/api/v1/tasks/{w.others_task.pk}/", api(404),
                                             note="another user's task: not found, for admins too")]),
    Row("api/v1/tasks/<uuid:task_id>/ack/", [post(lambda w: f"/api/v1/tasks/{w.others_task.pk}/ack/", api(404))]),
    Row("api/v1/tasks/<uuid:task_id>/nack/", [post(lambda w: f"/api/v1/tasks/{w.others_task.pk}/nack/", api(404))]),
    Row("api/v1/tasks/<uuid:task_id>/submit/", [post(lambda w: f"/api/v1/tasks/{w.others_task.pk}/submit/",
                                                     api_work(404), data={"labels": {"spam": 0}})]),
    Row("api/v1/messages/<uuid:message_id>/", [
        get(lambda w: f"/api/v1/messages/{w.answer.pk}/", api(200)),
        get(lambda w: f"/api/v1/messages/{w.spam.pk}/", api(404), note="a deleted message"),
    ]),
    Row("api/v1/messages/<uuid:message_id>/tree/", [
        get(lambda w: f"/api/v1/messages/{w.answer.pk}/tree/", api(200)),
        get(lambda w: f"/api/v1/messages/{w.spam.pk}/tree/", api(404), note="a deleted message"),
    ]),
    Row("api/v1/messages/<uuid:message_id>/emoji/", [
        post(lambda w: f"/api/v1/messages/{w.answer.pk}/emoji/", api_work(200), data={"emoji": "+1", "op": "add"}),
        post(lambda w: f"/api/v1/messages/{w.spam.pk}/emoji/", api_work(404), data={"emoji": "+1", "op": "add"}),
    ]),
    Row("api/v1/messages/<uuid:message_id>/report/", [
        post(lambda w: f"/api/v1/messages/{w.answer.pk}/report/", api_work(201), data={"reason": "rude"})]),
    Row("api/v1/moderation/messages/<uuid:message_id>/edit/", [
        post(lambda w: f"/api/v1/moderation/messages/{w.answer.pk}/edit/", api_moderation(200),
             data={"text": "Edited.", "reason": "typo"})]),
    Row("api/v1/moderation/messages/<uuid:message_id>/<str:action>/", [
        post(lambda w, action=action: f"/api/v1/moderation/messages/{w.answer.pk}/{action}/", api_moderation(200),
             data={"reason": "probe"}) for action in ("delete", "spam", "flag")
    ] + [post(lambda w: f"/api/v1/moderation/messages/{w.spam.pk}/undelete/", api_moderation(200),
              data={"reason": "probe"}),
         post(lambda w: f"/api/v1/moderation/messages/{w.answer.pk}/explode/", api(404))]),
    Row("api/v1/moderation/trees/<uuid:tree_id>/move/", [
        post(lambda w: f"/api/v1/moderation/trees/{w.tree.pk}/move/", api_moderation(200),
             data={"state": "halted_by_moderator", "reason": "probe"})]),
    Row("api/v1/moderation/flags/", [get("/api/v1/moderation/flags/", api_moderation(200))]),
    Row("api/v1/moderation/flags/<int:flag_id>/resolve/", [
        post(lambda w: f"/api/v1/moderation/flags/{w.flag.pk}/resolve/", api_moderation(200),
             data={"decision": "dismiss", "reason": "probe"})]),
    Row("api/v1/exports/", [
        get("/api/v1/exports/", api(403, researcher=200, superuser=200)),
        get("/api/v1/exports/?include_deleted=true&include_spam=true&state=growing",
            api(403, researcher=200, superuser=200), note="non-public messages: researchers only"),
        get("/api/v1/exports/?records=hf&include_deleted=true&state=growing",
            api(403, researcher=200, superuser=200), note="the Hugging Face zip: researchers only"),
    ]),
    # --- Admin: the site's own views -----------------------------------------------------------
    Row("admin/", [get("/admin/", admin(200, staff=200))]),
    Row("admin/login/", [get("/admin/login/", outcomes(redirect("/admin/"), anonymous=200, no_terms=200,
                                                       contributor=200, banned=200))]),
    Row("admin/logout/", [post("/admin/logout/", outcomes(redirect("/admin/"), staff=200, moderator=200,
                                                          researcher=200, superuser=200))]),
    Row("admin/password_change/", [get("/admin/password_change/", admin(200, staff=200))]),
    Row("admin/password_change/done/", [get("/admin/password_change/done/", admin(200, staff=200))]),
    Row("admin/autocomplete/", [get("/admin/autocomplete/?app_label=tasks&model_name=message&field_name=parent",
                                    admin(200), note="moderators may view messages")]),
    Row("admin/jsi18n/", [get("/admin/jsi18n/", admin(200, staff=200))]),
    Row("admin/r/<path:content_type_id>/<path:object_id>/", [
        get(lambda w: f"/admin/r/{w.message_type}/{w.answer.pk}/", admin(404, 404, staff=404),
            note="messages have no public URL of their own")]),
    Row("admin/^(?P<app_label>auth|oasst|tasks|ranking|training|sites|authtoken|django_celery_beat|account|"
        "socialaccount)/$", [get("/admin/tasks/", admin(200, staff=404, researcher=200),
                                 note="researchers see the trees"),
                             get("/admin/sites/", admin(404, staff=404))]),
    Row("admin/(?P<url>.*)$", [get("/admin/no-such-page/", admin(404, 404, staff=404))]),
    # --- Admin: moderation views ---------------------------------------------------------------
    Row("admin/oasst/user/<id>/password/", [get(lambda w: f"/admin/oasst/user/{w.users['superuser'].pk}/password/",
                                                admin(403), note="moderators cannot grant rights: nor set passwords")]),
    Row("admin/tasks/flaggedmessage/<int:flag_id>/resolve/<str:decision>/", [
        *(get(flag_resolve(decision), admin(200), note="the decision's page: the message and a reason to give")
          for decision in ("dismiss", "delete", "ban")),
        *(post(flag_resolve(decision), admin(redirect("/admin/tasks/flaggedmessage/"),
                                             redirect("/admin/tasks/flaggedmessage/")),
               data={"reason": "probe"}) for decision in ("dismiss", "delete", "ban")),
        post(flag_resolve("delete"), admin(400, 400), data={"reason": ""}, note="no reason: refused, nothing done"),
    ]),
    Row("admin/tasks/message/<path:object_id>/moderate/<str:step>/", [
        get(lambda w: f"/admin/tasks/message/{w.answer.pk}/moderate/delete/", admin(200)),
        post(lambda w: f"/admin/tasks/message/{w.answer.pk}/moderate/delete/",
             admin(redirect("/admin/tasks/message/"), redirect("/admin/tasks/message/")), data={"reason": "probe"}),
        post(lambda w: f"/admin/tasks/message/{w.spam.pk}/moderate/undelete/",
             admin(redirect("/admin/tasks/message/"), redirect("/admin/tasks/message/")),
             data={"choice": "deleted by mistake"}),
        post(lambda w: f"/admin/tasks/message/{w.answer.pk}/moderate/delete/", admin(400, 400),
             data={"choice": "other"}, note="\"other\" without its text: refused, nothing done"),
        get(lambda w: f"/admin/tasks/message/{w.answer.pk}/moderate/purge/", admin(404, 404)),
    ]),
    Row("admin/tasks/flaggedmessage/trollboard/", [get("/admin/tasks/flaggedmessage/trollboard/", admin(200))]),
    Row("admin/tasks/flaggedmessage/statistics/", [get("/admin/tasks/flaggedmessage/statistics/", admin(200))]),
    Row("admin/tasks/message/lowest-scored/", [get("/admin/tasks/message/lowest-scored/", admin(200))]),
    Row("admin/tasks/message/disagreements/", [get("/admin/tasks/message/disagreements/", admin(200))]),
    Row("admin/training/trainingrun/<int:run_id>/plot/<str:name>", [
        get(lambda w: f"/admin/training/trainingrun/{w.run.pk}/plot/reward_accuracy.png", admin(404, 404, staff=404),
            note="a run whose plot was never written")]),
    # The reward model in service: training.promote_trainingrun, which no group holds (tests/training/test_serving.py
    # proves the POSTs); a GET is the confirmation page and changes nothing.
    Row("admin/training/trainingrun/<int:run_id>/service/<str:step>/", [
        get(lambda w: f"/admin/training/trainingrun/{w.run.pk}/service/promote/", admin(403))]),
    # Champion / challenger (tests/training/test_challenge.py proves the POSTs): cancelling needs training.launch_run
    # (a GET is the confirmation page); "Run a challenge now" needs training.promote_trainingrun and is POST only.
    Row("admin/training/trainingrun/<int:run_id>/cancel/", [
        get(lambda w: f"/admin/training/trainingrun/{w.run.pk}/cancel/", admin(403))]),
    Row("admin/training/trainingrun/challenge/", [
        get("/admin/training/trainingrun/challenge/", admin(405, 405, staff=405), note="POST only: it queues a run")]),
    # A POST makes an export file (tests/training/test_runs.py proves who may); a GET changes nothing.
    Row("admin/training/trainingrun/export/", [
        get("/admin/training/trainingrun/export/", admin(405, 405, staff=405), note="POST only: it writes a file")]),
]

MATRIX += [
    *model_rows("auth/group", lambda w: Group.objects.get(name="moderators").pk, admin_model(moderator_view=False)),
    # Issue 21: these lookups told a moderator the superuser's token and any email, a character at a time.
    *model_rows("oasst/user", lambda w: w.author.pk, admin_model(moderator_view=True),
                lookups=("auth_token__key__startswith=9f", "email=root@example.org")),
    *model_rows("oasst/moderationevent", lambda w: w.event.pk,
                admin_model(moderator_view=True, add=403, delete=403)),
    *model_rows("tasks/message", lambda w: w.answer.pk, admin_model(moderator_view=True, add=403, delete=403)),
    # Researchers open the tree list to pick trees to download (the actions' table below).
    *model_rows("tasks/messagetree", lambda w: w.tree.pk,
                admin_model(moderator_view=True, researcher_view=True, add=403, delete=403)),
    # The flagged queue opens on its open flags (a bare GET redirects there first, for any staff).
    *model_rows("tasks/flaggedmessage", lambda w: w.flag.pk, admin_model(moderator_view=True, add=403, delete=403),
                query="?processed__exact=0"),
    *model_rows("ranking/rankingresult", lambda w: w.ranking_result.pk,
                admin_model(moderator_view=True, add=403)),
    *model_rows("training/trainingrun", lambda w: w.run.pk, admin_model(moderator_view=False)),
    *model_rows("sites/site", lambda w: w.site_id, admin_model(moderator_view=False)),
    *model_rows("authtoken/tokenproxy", lambda w: w.author.pk, admin_model(moderator_view=False)),
    *model_rows("django_celery_beat/periodictask", lambda w: w.periodic.pk, admin_model(moderator_view=False)),
    *model_rows("django_celery_beat/clockedschedule", lambda w: w.clocked.pk, admin_model(moderator_view=False)),
    *model_rows("django_celery_beat/crontabschedule", lambda w: w.crontab.pk, admin_model(moderator_view=False)),
    *model_rows("django_celery_beat/solarschedule", lambda w: w.solar.pk, admin_model(moderator_view=False)),
    *model_rows("django_celery_beat/intervalschedule", lambda w: w.interval.pk, admin_model(moderator_view=False)),
    *model_rows("account/emailaddress", lambda w: w.address.pk, admin_model(moderator_view=False)),
    *model_rows("socialaccount/socialapp", lambda w: w.app.pk, admin_model(moderator_view=False)),
    *model_rows("socialaccount/socialtoken", lambda w: w.social_token.pk, admin_model(moderator_view=False)),
    *model_rows("socialaccount/socialaccount", lambda w: w.social.pk, admin_model(moderator_view=False)),
]


# --- Admin actions: every bulk action of every admin, as each role -------------------------------
#
# Each is POSTed to its changelist with a real object selected and the data its form asks for, so an
# allowed action runs. Answers: DONE (back to the list, the database changed, no warning or error),
# DOWNLOAD (an attachment), REFUSED (back to the list with a warning or error, or the list itself:
# nothing changed), or the admin's log-in redirect / 403 of a role that cannot open the list.
DONE, DOWNLOAD, REFUSED = "done", "download", "refused"


def action_answers(superuser=DONE, *, moderator=403, researcher=403) -> dict:
    return outcomes(ADMIN_LOGIN, staff=403, moderator=moderator, researcher=researcher, superuser=superuser)


@dataclass
class ActionProbe:
    target: object  # a function of the world giving the selected object's pk
    expect: dict
    data: dict = field(default_factory=dict)
    setup: object = None  # a function of the world run first (inside the probe's savepoint)
    changes_database: bool = True  # False: the action only answers (a download, a message)
    note: str = ""


REASON = {"apply": "1", "reason": "probe"}
CONFIRM_DELETE = {"post": "yes"}


def moderation(target) -> ActionProbe:
    """A moderation action, confirmed with a reason: moderators and superusers only."""
    return ActionProbe(target, action_answers(moderator=DONE), data=REASON)


def delete_selected(target, *, moderator=403) -> ActionProbe:
    """Django's delete action (confirmed): superusers only, as the delete permission."""
    return ActionProbe(target, action_answers(moderator=moderator), data=CONFIRM_DELETE)


def halted(w) -> None:
    services.tree_move(actor=w.users["superuser"], tree_id=w.tree.pk, state=TreeState.HALTED_BY_MODERATOR,
                       reason="probe")


def disabled(w) -> None:
    PeriodicTask.objects.filter(pk=w.periodic.pk).update(enabled=False)


# Keyed by the admin's URL prefix and the action's name. Users selected are contributors: acting on
# staff, moderators, researchers and superusers needs a superuser (tests/security/test_moderator_limits).
ACTIONS: dict[tuple[str, str], ActionProbe] = {
    ("oasst/user", "ban"): moderation(lambda w: w.author.pk),
    ("oasst/user", "unban"): ActionProbe(lambda w: w.users["banned"].pk, action_answers(moderator=DONE),
                                         data=REASON),
    ("oasst/user", "purge_messages"): ActionProbe(lambda w: w.other.pk, action_answers(moderator=DONE),
                                                  data=REASON),
    ("oasst/user", "anonymise"): moderation(lambda w: w.author.pk),
    ("oasst/user", "delete_selected"): delete_selected(lambda w: w.author.pk, moderator=REFUSED),
    ("tasks/message", "delete_with_subtree"): moderation(lambda w: w.answer.pk),
    ("tasks/message", "undelete_with_ancestors"): moderation(lambda w: w.spam.pk),
    ("tasks/message", "mark_spam"): moderation(lambda w: w.answer.pk),
    ("tasks/message", "add_to_flagged_queue"): moderation(lambda w: w.prompt.pk),
    ("tasks/message", "halt_tree"): moderation(lambda w: w.answer.pk),
    ("tasks/message", "resume_tree"): ActionProbe(lambda w: w.answer.pk, action_answers(moderator=DONE),
                                                  data=REASON, setup=halted),
    ("tasks/messagetree", "halt"): ActionProbe(lambda w: w.tree.pk, action_answers(moderator=DONE,
                                                                                   researcher=REFUSED), data=REASON),
    ("tasks/messagetree", "resume"): ActionProbe(lambda w: w.tree.pk, action_answers(moderator=DONE,
                                                                                     researcher=REFUSED),
                                                 data=REASON, setup=halted),
    ("tasks/messagetree", "abort"): ActionProbe(lambda w: w.tree.pk, action_answers(moderator=DONE,
                                                                                    researcher=REFUSED), data=REASON),
    ("tasks/messagetree", "move_to_state"): ActionProbe(
        lambda w: w.tree.pk, action_answers(moderator=DONE, researcher=REFUSED),
        data={**REASON, "state": "halted_by_moderator"}),
    # Exports carry deleted and spam messages and author ids: the export permission only (issue 21,
    # finding 3), anonymised; the real ids are a superuser's explicit choice.
    ("tasks/messagetree", "download_export"): ActionProbe(
        lambda w: w.tree.pk, action_answers(DOWNLOAD, moderator=REFUSED, researcher=DOWNLOAD),
        changes_database=False),
    ("tasks/messagetree", "download_export_real_ids"): ActionProbe(
        lambda w: w.tree.pk, action_answers(DOWNLOAD, moderator=REFUSED, researcher=REFUSED),
        changes_database=False),
    ("tasks/messagetree", "download_export_hf"): ActionProbe(
        lambda w: w.tree.pk, action_answers(DOWNLOAD, moderator=REFUSED, researcher=DOWNLOAD),
        changes_database=False),
    ("tasks/flaggedmessage", "dismiss"): moderation(lambda w: w.flag.pk),
    ("tasks/flaggedmessage", "delete_messages"): moderation(lambda w: w.flag.pk),
    ("tasks/flaggedmessage", "delete_and_ban"): moderation(lambda w: w.flag.pk),
    # Moderators see ranking results but have no action on them: the list answers, nothing changes.
    ("ranking/rankingresult", "delete_selected"): delete_selected(lambda w: w.ranking_result.pk, moderator=REFUSED),
    ("training/trainingrun", "delete_selected"): delete_selected(lambda w: w.run.pk),
    ("auth/group", "delete_selected"): delete_selected(lambda w: Group.objects.get(name="researchers").pk),
    ("sites/site", "delete_selected"): delete_selected(lambda w: w.site_id),
    ("django_celery_beat/periodictask", "enable_tasks"): ActionProbe(lambda w: w.periodic.pk, action_answers(),
                                                                     setup=disabled),
    ("django_celery_beat/periodictask", "disable_tasks"): ActionProbe(lambda w: w.periodic.pk, action_answers()),
    ("django_celery_beat/periodictask", "toggle_tasks"): ActionProbe(lambda w: w.periodic.pk, action_answers()),
    ("django_celery_beat/periodictask", "run_tasks"): ActionProbe(lambda w: w.periodic.pk, action_answers(),
                                                                  changes_database=False),
    ("django_celery_beat/periodictask", "delete_selected"): delete_selected(lambda w: w.periodic.pk),
    ("django_celery_beat/clockedschedule", "delete_selected"): delete_selected(lambda w: w.clocked.pk),
    ("django_celery_beat/crontabschedule", "delete_selected"): delete_selected(lambda w: w.crontab.pk),
    ("django_celery_beat/solarschedule", "delete_selected"): delete_selected(lambda w: w.solar.pk),
    ("django_celery_beat/intervalschedule", "delete_selected"): delete_selected(lambda w: w.interval.pk),
    ("account/emailaddress", "make_verified"): ActionProbe(lambda w: w.address.pk, action_answers()),
    ("account/emailaddress", "delete_selected"): delete_selected(lambda w: w.address.pk),
    ("socialaccount/socialapp", "delete_selected"): delete_selected(lambda w: w.app.pk),
    ("socialaccount/socialtoken", "delete_selected"): delete_selected(lambda w: w.social_token.pk),
    ("socialaccount/socialaccount", "delete_selected"): delete_selected(lambda w: w.social.pk),
}

# Not in the URL resolver: answered by oasst.middleware.HealthCheckMiddleware before any URL matching, and
# /metrics by oasst.middleware.MetricsMiddleware only to a scraper with the token: every role, admins included,
# gets the 404 of an unknown path, with the token configured (_metrics_guard_armed).
OUTSIDE_RESOLVER = [Row("healthz", [get("/healthz", outcomes(200))]), Row("metrics", [get("/metrics", outcomes(404))])]


@pytest.fixture(autouse=True)
def _metrics_guard_armed(settings):
    settings.METRICS_TOKEN = "matrix-scrape-token-0123456789"  # noqa: S105


# --- Running the table ---------------------------------------------------------------------------


def resolver_routes(resolver=None, prefix: str = "") -> list[str]:
    resolver = resolver or get_resolver()
    routes = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            routes += resolver_routes(pattern, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            routes.append(prefix + str(pattern.pattern))
    return routes


def client_for(world, role: str, path: str):
    """API paths authenticate with the user's token, pages with a session."""
    user = world.users.get(role)
    if path.startswith("/api/"):
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        return client
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def send(world, role: str, probe: Probe):
    path = probe.path(world) if callable(probe.path) else probe.path
    client = client_for(world, role, path)
    cache.clear()  # rate limits are proven in test_abuse; here every request is the role's first
    data = probe.data(world) if callable(probe.data) else probe.data
    with transaction.atomic():
        if probe.method == "get":
            response = client.get(path)
        elif isinstance(client, APIClient):
            response = client.post(path, data, format="json")
        else:
            response = client.post(path, data)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        transaction.set_rollback(True)
    return path, response, body


def outcome_of(response) -> object:
    if response.status_code == 302:
        return f"redirect:{response['Location']}"
    return response.status_code


def matches(expected, actual) -> bool:
    if isinstance(expected, str):
        return isinstance(actual, str) and actual.startswith(expected)
    return expected == actual


def test_every_url_pattern_is_in_the_matrix():
    listed = [row.route for row in MATRIX]
    assert len(listed) == len(set(listed)), "a route is listed twice"
    routes = set(resolver_routes())
    missing = sorted(routes - set(listed))
    stale = sorted(set(listed) - routes)
    assert not missing, f"URL patterns without a row in the authorisation matrix: {missing}"
    assert not stale, f"rows for URL patterns that no longer exist: {stale}"
    for row in MATRIX + OUTSIDE_RESOLVER:
        assert row.probes, f"{row.route}: a row needs at least one probe"
        for probe in row.probes:
            assert set(probe.expect) == set(ROLES), f"{row.route}: every role needs an expected answer"


def test_every_admin_action_is_in_the_matrix():
    """Every action any admin offers a superuser (so every action anyone may be offered) has a row."""
    request = RequestFactory().post("/admin/")
    request.user = User(is_active=True, is_staff=True, is_superuser=True)
    offered = {(prefix, name) for prefix, model_admin in registered_admins().items()
               for name in model_admin.get_actions(request)}
    missing = sorted(offered - set(ACTIONS))
    stale = sorted(set(ACTIONS) - offered)
    assert not missing, f"admin actions without a row in the authorisation matrix: {missing}"
    assert not stale, f"rows for admin actions that no longer exist: {stale}"
    for key, probe in ACTIONS.items():
        assert set(probe.expect) == set(ROLES), f"{key}: every role needs an expected answer"


def database_state(model, pk) -> tuple:
    """The selected row and the audit log's length: every moderation service writes the audit log."""
    return model._default_manager.filter(pk=pk).values().first(), ModerationEvent.objects.count()


def send_action(world, role: str, prefix: str, name: str, probe: ActionProbe):
    """POSTs the action as the changelist's Go button does; answers (what came back, whether the
    database changed), the probe's changes rolled back."""
    model = registered_admins()[prefix].model
    pk = probe.target(world)
    client = client_for(world, role, "/admin/")
    cache.clear()
    with transaction.atomic():
        if probe.setup:
            probe.setup(world)
        before = database_state(model, pk)
        response = client.post(f"/admin/{prefix}/", {"action": name, "index": "0", "_selected_action": [str(pk)],
                                                      **probe.data})
        if response.streaming:
            b"".join(response.streaming_content)
        changed = database_state(model, pk) != before
        transaction.set_rollback(True)
    if response.get("Content-Disposition", "").startswith("attachment"):
        return DOWNLOAD, changed
    answer = outcome_of(response)
    if answer == 200 or answer == redirect(f"/admin/{prefix}/"):  # back to the list
        notes = list(messages.get_messages(response.wsgi_request))
        warned = any(note.level >= messages.WARNING for note in notes)
        done = changed if probe.changes_database else bool(notes)
        return (DONE if done and not warned else REFUSED), changed
    return answer, changed


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_expected_answer_to_every_admin_action(world, role):
    """Every bulk action of every admin as this role, on a real object: done, downloaded, or refused
    with the database unchanged."""
    wrong = []
    for (prefix, name), probe in ACTIONS.items():
        answer, changed = send_action(world, role, prefix, name, probe)
        expected = probe.expect[role]
        if not matches(expected, answer):
            wrong.append(f"{prefix} {name}: expected {expected}, got {answer}")
        elif expected != DONE and changed:
            wrong.append(f"{prefix} {name}: answered {answer} but changed the database")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


EMAIL = re.compile(rb"[\w.+-]+@[\w-]+\.[\w.-]+")


def shows_emails(role: str, route: str) -> bool:
    """Where another user's email may appear: superusers administer accounts in the admin; the email
    confirmation page shows the address its secret key was mailed to (the key proves the mailbox)."""
    return (role == "superuser" and route.startswith("admin/")) or route.startswith("accounts/^confirm-email/")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_expected_answer_and_no_one_elses_email_on_every_url(world, role):
    """Every probe of the matrix as this role: the expected status or redirect, and in no answer (pages
    and API alike) the email address of any other user."""
    from django.contrib.auth import get_user_model

    own = world.users[role].email if role in world.users else None
    others = {u.email.encode() for u in get_user_model().objects.exclude(email="") if u.email != own}
    wrong, leaks = [], []
    for row in MATRIX + OUTSIDE_RESOLVER:
        for probe in row.probes:
            path, response, body = send(world, role, probe)
            actual = outcome_of(response)
            if not matches(probe.expect[role], actual):
                wrong.append(f"{probe.method.upper()} {path} ({row.route}): expected {probe.expect[role]}, "
                             f"got {actual}")
            found = others & set(EMAIL.findall(body))
            if found and not shows_emails(role, row.route):
                leaks.append(f"{probe.method.upper()} {path}: {sorted(e.decode() for e in found)}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)
    assert not leaks, f"{role} sees other users' emails:\n" + "\n".join(leaks)


def test_a_moderator_cannot_set_anyones_password_or_email(world):
    """Moderators change users (ban, notes) but must not take accounts over: a password set by them, or
    an email they point at their own mailbox followed by a password reset, would open any account,
    a superuser's included."""
    from django.contrib.auth import get_user_model

    root = world.users["superuser"]
    client = client_for(world, "moderator", "/admin/")
    form = client.get(f"/admin/oasst/user/{root.pk}/password/")
    assert form.status_code == 403
    client.post(f"/admin/oasst/user/{root.pk}/password/", {"password1": "taken-over-77", "password2": "taken-over-77",
                                                           "usable_password": "true"})
    client.post(f"/admin/oasst/user/{root.pk}/change/", {
        "username": root.username, "email": "moderator@example.org", "preferred_language": "en",
        "display_name": "", "moderator_notes": "", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    root = get_user_model().objects.get(pk=root.pk)
    assert not root.check_password("taken-over-77")
    assert root.email == "root@example.org"


def test_nobody_sees_another_users_pending_task(world):
    """Another user's pending task answers 404 everywhere (API and pages, admins included), cannot be
    acknowledged, skipped or submitted, and its id and payload appear on no page of another user."""
    task = world.others_task
    for role in SIGNED_IN:
        api_client = client_for(world, role, "/api/")
        assert api_client.get(f"/api/v1/tasks/{task.pk}/").status_code == 404
        for action, body in (("ack", {}), ("nack", {"reason": "x"}), ("submit", {"labels": {"spam": 0}})):
            assert api_client.post(f"/api/v1/tasks/{task.pk}/{action}/", body, format="json").status_code in (403, 404)
        pages = client_for(world, role, "/")
        pages.post(f"/tasks/{task.pk}/skip/")
        pages.post(f"/tasks/{task.pk}/submit/", {"label-spam": "0"})
        for path in ("/dashboard/", "/profile/", "/profile/data/", "/messages/", f"/messages/{world.answer.pk}/"):
            body = pages.get(path, follow=True).content.decode()
            assert str(task.pk) not in body, f"{role} sees another user's task on {path}"
    task.refresh_from_db()
    assert task.acked_at is None and not task.done and not task.skipped


def test_deleted_messages_stay_hidden_from_everyone_but_researchers_exports(world):
    """A moderator-deleted message: not in the Messages pages, the tree page, the API's message and tree,
    nor the default export; a researcher asking for deleted messages gets it."""
    secret = world.spam.text
    for role in SIGNED_IN:
        pages = client_for(world, role, "/")
        for path in ("/messages/", f"/messages/?q={secret.split()[0]}", f"/messages/{world.prompt.pk}/",
                     "/profile/", "/dashboard/"):
            assert secret not in pages.get(path, follow=True).content.decode(), f"{role}: {path}"
        api_client = client_for(world, role, "/api/")
        assert api_client.get(f"/api/v1/messages/{world.spam.pk}/").status_code == 404
        tree = api_client.get(f"/api/v1/messages/{world.prompt.pk}/tree/")
        assert tree.status_code == 200 and secret not in tree.content.decode()
    researcher = client_for(world, "researcher", "/api/")
    default = b"".join(researcher.get("/api/v1/exports/?state=growing").streaming_content).decode()
    assert world.answer.text in default and secret not in default
    everything = researcher.get("/api/v1/exports/?state=growing&include_deleted=true&include_spam=true")
    assert secret in b"".join(everything.streaming_content).decode()
    for role in ("contributor", "staff", "moderator", "banned"):
        refused = client_for(world, role, "/api/").get("/api/v1/exports/?state=growing&include_deleted=true")
        assert refused.status_code == 403, role


def test_users_hidden_from_the_leaderboard_are_on_no_board(world):
    from django.contrib.auth import get_user_model

    from ranking.services import leaderboard_rebuild

    get_user_model().objects.filter(pk=world.author.pk).update(show_on_leaderboard=False, display_name="Hidden Hera")
    leaderboard_rebuild(frame="total")
    for role in ROLES:
        assert "Hidden Hera" not in client_for(world, role, "/").get("/leaderboard/total/").content.decode()
        if role != "anonymous":
            board = client_for(world, role, "/api/").get("/api/v1/leaderboard/total/").json()
            assert "Hidden Hera" not in json.dumps(board)
