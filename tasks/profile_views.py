"""The contributor's profile area, under /profile/: stats, contributions, settings, API token, their
data and deleting the account. It lives in tasks, the app above the data it shows (messages, trees,
scores); the account writers it calls are oasst's."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.authtoken.models import Token

from oasst import services
from oasst.forms import AccountDeleteForm, ProfileSettingsForm
from oasst.languages import LANGUAGES
from ranking import scoring
from ranking.selectors import leaderboard_ranks, user_scores
from tasks.models import Message, TreeState

# --- Profile -------------------------------------------------------------------------------------

FRAMES = [("day", gettext_lazy("Last 24 hours")), ("week", gettext_lazy("Last 7 days")),
          ("month", gettext_lazy("Last 30 days")), ("total", gettext_lazy("All time"))]
KIND_TITLES = {
    scoring.PROMPT: gettext_lazy("Prompts written"),
    scoring.ASSISTANT_REPLY: gettext_lazy("Assistant replies written"),
    scoring.PROMPTER_REPLY: gettext_lazy("User replies written"),
    scoring.SIMPLE_LABEL: gettext_lazy("Simple reviews"),
    scoring.FULL_LABEL: gettext_lazy("Full reviews"),
    scoring.RANKING: gettext_lazy("Rankings"),
    scoring.GOOD_RANKING: gettext_lazy("Rankings that matched the consensus"),
    scoring.ACCEPTED_PROMPT: gettext_lazy("Prompts accepted"),
    scoring.ACCEPTED_ASSISTANT_REPLY: gettext_lazy("Assistant replies accepted"),
    scoring.ACCEPTED_PROMPTER_REPLY: gettext_lazy("User replies accepted"),
    scoring.RANKED_1ST: gettext_lazy("Replies ranked 1st"),
    scoring.RANKED_2ND: gettext_lazy("Replies ranked 2nd"),
    scoring.RANKED_3RD: gettext_lazy("Replies ranked 3rd"),
}
TREE_STATE_TITLES = {
    TreeState.INITIAL_PROMPT_REVIEW: gettext_lazy("prompt in review"),
    TreeState.PROMPT_LOTTERY_WAITING: gettext_lazy("waiting its turn"),
    TreeState.GROWING: gettext_lazy("growing"),
    TreeState.RANKING: gettext_lazy("being ranked"),
    TreeState.READY_FOR_SCORING: gettext_lazy("being scored"),
    TreeState.READY_FOR_EXPORT: gettext_lazy("complete"),
    TreeState.SCORING_FAILED: gettext_lazy("being scored"),
    TreeState.ABORTED_LOW_GRADE: gettext_lazy("stopped: prompt rejected"),
    TreeState.HALTED_BY_MODERATOR: gettext_lazy("halted by a moderator"),
    TreeState.BACKLOG_RANKING: gettext_lazy("being ranked"),
}
CONTRIBUTION_FILTERS = {
    "all": (gettext_lazy("All"), Q()),
    "prompts": (gettext_lazy("Prompts"), Q(parent__isnull=True)),
    "replies": (gettext_lazy("Replies"), Q(parent__isnull=False)),
}
CONTRIBUTIONS_PER_PAGE = 20
NEW_KEY_SESSION_FIELD = "profile_new_api_key"


def _profile_stats(user) -> dict:
    """Points per time frame with their breakdown, rank, level and streak (4 queries)."""
    scores = user_scores(user=user)
    ranks = leaderboard_ranks(user)
    total = scores["total"].score
    points_in_level, level_span = scoring.level_progress(total)
    return {
        "frames": [{"key": frame, "title": title, "score": scores[frame].score,
                    "rank": ranks[frame].rank if frame in ranks else None} for frame, title in FRAMES],
        "breakdown": [{"title": KIND_TITLES[kind],
                       "cells": [{"count": scores[frame].counts.get(kind, 0),
                                  "points": scores[frame].breakdown.get(kind, 0)} for frame, _title in FRAMES]}
                      for kind in scoring.KINDS if scores["total"].counts.get(kind)],
        "level": scoring.level(total), "points_in_level": points_in_level, "level_span": level_span,
        "level_percent": int(100 * points_in_level / level_span) if level_span else 100,
        "streak": scoring.streak_now(streak_days=user.streak_days, last_activity_at=user.last_activity_at,
                                     now=timezone.now()),
    }


def _contribution_summary(user) -> dict:
    return Message.objects.filter(author=user).aggregate(
        total=Count("id"),
        prompts=Count("id", filter=Q(parent__isnull=True)),
        accepted=Count("id", filter=Q(review_result=True, deleted=False)),
        rejected=Count("id", filter=Q(review_result=False, deleted=False)),
        in_review=Count("id", filter=Q(review_result__isnull=True, deleted=False)),
        ranked_first=Count("id", filter=Q(rank=0, deleted=False)),
    )


def _contributions(request, *, summary: dict | None = None) -> dict:
    """One page of the user's messages with their review status, rank and tree. The number of rows
    comes from the summary when the page has one; the page itself is always one query, also when
    it is empty, so the page's query count is the same for every user."""
    show = request.GET.get("show", "all")
    if show not in CONTRIBUTION_FILTERS:
        show = "all"
    messages_ = (Message.objects.filter(CONTRIBUTION_FILTERS[show][1], author=request.user)
                 .select_related("tree").order_by("-created_at", "-pk")
                 .only("id", "parent_id", "role", "text", "lang", "created_at", "review_result", "review_count",
                       "rank", "deleted", "tree__id", "tree__state", "tree__message_count", "tree__accepted_count",
                       "tree__goal_tree_size"))
    paginator = Paginator(messages_, CONTRIBUTIONS_PER_PAGE)
    if summary is None:
        paginator.count = messages_.count()
    else:
        paginator.count = {"all": summary["total"], "prompts": summary["prompts"],
                           "replies": summary["total"] - summary["prompts"]}[show]
    try:
        number = paginator.validate_number(request.GET.get("page") or 1)
    except PageNotAnInteger:
        number = 1
    except EmptyPage:
        number = paginator.num_pages
    start = (number - 1) * CONTRIBUTIONS_PER_PAGE
    page = Page(list(messages_[start:start + CONTRIBUTIONS_PER_PAGE]), number, paginator)
    rows = [{"message": message, "tree_state": TREE_STATE_TITLES.get(message.tree.state, message.tree.state)}
            for message in page.object_list]
    return {"page": page, "rows": rows, "show": show,
            "filters": [(key, title) for key, (title, _q) in CONTRIBUTION_FILTERS.items()]}


@login_required
@require_GET
def profile(request):
    """Stats per time frame and the user's own contributions; the contributions list pages in place
    with htmx (the fragment skips the stats)."""
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.target == "contributions" and not htmx.history_restore_request:
        response = render(request, "oasst/profile_contributions.html", _contributions(request))
    else:
        summary = _contribution_summary(request.user)
        response = render(request, "oasst/profile.html", {
            "section": "overview", "stats": _profile_stats(request.user), "summary": summary,
            "lang_name": LANGUAGES.get(request.user.preferred_language), **_contributions(request, summary=summary),
        })
    patch_vary_headers(response, ["HX-Request"])  # one URL, two bodies: caches must tell them apart
    return response


@login_required
@require_http_methods(["GET", "POST"])
def profile_settings(request):
    user = request.user
    form = ProfileSettingsForm(request.POST or None, initial={
        "display_name": user.public_name, "preferred_language": user.preferred_language,
        "show_on_leaderboard": user.show_on_leaderboard, "ui_language": user.ui_language,
    })
    if request.method == "POST" and form.is_valid():
        language_before = user.preferred_language
        try:
            services.profile_update(user=user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(ProfileSettingsForm.ERROR_FIELDS.get(getattr(error, "code", None)), error)
        else:
            if user.preferred_language != language_before:
                request.session.pop("task_lang", None)  # the new language applies to this session too
            messages.success(request, _("Your settings are saved."))
            response = redirect("profile-settings")
            # the picker's cookie would otherwise outrank "follow my task language" on a later visit
            response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
            return response
    return render(request, "oasst/profile_settings.html", {"section": "settings", "form": form},
                  status=400 if form.errors else 200)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def profile_token(request):
    """Create, rotate or revoke the API token. A new key is shown once: it travels to the next page
    in the session and is removed from it there."""
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "rotate":
                request.session[NEW_KEY_SESSION_FIELD] = services.api_token_rotate(user=request.user)
            elif action == "revoke":
                services.api_token_revoke(user=request.user)
                messages.success(request, _("Your API token is revoked: it no longer works."))
            else:
                return HttpResponseBadRequest(_("Unknown action."))
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        return redirect("profile-token")
    token = Token.objects.filter(user=request.user).only("created").first()
    return render(request, "oasst/profile_token.html", {
        "section": "token", "token": token, "new_key": request.session.pop(NEW_KEY_SESSION_FIELD, None),
    })


@never_cache
@login_required
@require_GET
def profile_data(request):
    """Everything stored about the user, as a JSON download."""
    data = services.user_data_export(user=request.user)
    response = JsonResponse(data, encoder=DjangoJSONEncoder, json_dumps_params={"indent": 2, "ensure_ascii": False})
    filename = f"oasst-data-{request.user.username}-{timezone.now():%Y-%m-%d}.json"
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    return response


@login_required
@require_POST
def profile_logout_everywhere(request):
    """End every session of the user (this one too) and revoke their API token."""
    revoked = services.logout_everywhere(user=request.user)
    logout(request)
    messages.success(request, _("You are logged out everywhere: %(sessions)d sessions ended, %(tokens)d API tokens "
                                "revoked.") % revoked)
    return redirect("account_login")


@login_required
@require_http_methods(["GET", "POST"])
def profile_delete(request):
    """Delete (anonymise) the account once the user has typed their username."""
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            services.account_delete(user=request.user)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            logout(request)
            messages.success(request, _("Your account is deleted. Your messages remain, attributed to no one."))
            return redirect("home")
    return render(request, "oasst/profile_delete.html", {"section": "delete", "form": form},
                  status=400 if form.errors else 200)
