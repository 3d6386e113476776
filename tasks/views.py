"""Contributor pages: landing, dashboard, one page per task, previews. They call the same services
as the API; htmx swaps fragments where a page updates in place."""

from __future__ import annotations

import math
from datetime import datetime
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language_info, gettext, gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from oasst import services as account_services
from oasst.languages import LANGUAGES
from oasst.templatetags.oasst_tags import render_markdown
from oasst.throttles import check_throttled
from ranking import scoring
from ranking.models import UserScore
from ranking.selectors import leaderboard_ranks, session_progress, user_scores
from ranking.services import user_scores_refresh
from tasks import selectors, services
from tasks.guidance import LABEL_GUIDE, task_guidelines
from tasks.models import Message, MessageTree, Task, TaskType, TreeState
from tasks.tree_manager import LIKERT_LABELS, YES_NO_LABELS, tree_config

TASK_TITLES = {
    TaskType.INITIAL_PROMPT: gettext_lazy("Write a prompt"),
    TaskType.ASSISTANT_REPLY: gettext_lazy("Reply as the assistant"),
    TaskType.PROMPTER_REPLY: gettext_lazy("Reply as the user"),
    TaskType.RANK_ASSISTANT_REPLIES: gettext_lazy("Rank the assistant's replies"),
    TaskType.RANK_PROMPTER_REPLIES: gettext_lazy("Rank the user's replies"),
    TaskType.LABEL_INITIAL_PROMPT: gettext_lazy("Review a prompt"),
    TaskType.LABEL_ASSISTANT_REPLY: gettext_lazy("Review an assistant reply"),
    TaskType.LABEL_PROMPTER_REPLY: gettext_lazy("Review a user reply"),
}
LABEL_HELP = {
    "spam": gettext_lazy("Spam, or not a serious attempt at the task"),
    "fails_task": gettext_lazy("Fails to do what was asked"),
    "lang_mismatch": gettext_lazy("Not in the language of the task"),
    "pii": gettext_lazy("Contains personal data"),
    "not_appropriate": gettext_lazy("Inappropriate for a customer assistant"),
    "hate_speech": gettext_lazy("Hate speech"),
    "sexual_content": gettext_lazy("Sexual content"),
    "moral_judgement": gettext_lazy("Expresses a moral judgement"),
    "political_content": gettext_lazy("Expresses political views"),
    "quality": gettext_lazy("Quality"),
    "toxicity": gettext_lazy("Rude, abusive or toxic"),
    "humor": gettext_lazy("Humorous"),
    "helpfulness": gettext_lazy("Helpful"),
    "creativity": gettext_lazy("Creative"),
    "violence": gettext_lazy("Violent"),
}
DONE_SESSION_KEY = "task_done"  # the last submission's outcome, for its thank-you page
SESSION_START_KEY = "work_started_at"  # logging out ends the session and so the progress strip's count
YES_NO_STEPS = [("0", gettext_lazy("No")), ("1", gettext_lazy("Yes"))]
LIKERT_STEPS = [("0", "1"), ("0.25", "2"), ("0.5", "3"), ("0.75", "4"), ("1", "5")]


def task_lang(request) -> str:
    return request.session.get("task_lang") or request.user.preferred_language


def terms_accepted_required(view):
    """Contributors accept the terms of service before their first task."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.user.tos_accepted_at is None:
            return redirect(f"{reverse('terms')}?next={request.get_full_path()}")
        return view(request, *args, **kwargs)

    return login_required(wrapped)


def home(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    counts = cache.get("landing-counts")
    if counts is None:
        counts = {
            "messages": Message.objects.filter(deleted=False).count(),
            "trees_ready": MessageTree.objects.filter(state=TreeState.READY_FOR_EXPORT).count(),
            "contributors": Message.objects.values("author_id").distinct().count(),
        }
        cache.set("landing-counts", counts, 60)
    return render(request, "tasks/home.html", {"counts": counts})


def _stats(user) -> dict:
    scores = user_scores(user=user)
    total = scores["total"].score
    points_in_level, level_span = scoring.level_progress(total)
    ranks = leaderboard_ranks(user)
    return {
        "scores": scores, "level": scoring.level(total), "points_in_level": points_in_level,
        "level_span": level_span,
        "level_percent": int(100 * points_in_level / level_span) if level_span else 100,
        "streak": scoring.streak_now(streak_days=user.streak_days, last_activity_at=user.last_activity_at,
                                     now=timezone.now()),
        "rank": ranks["total"].rank if "total" in ranks else None,
    }


def _availability(request) -> list[tuple[str, str, int]]:
    counts = selectors.task_availability(user=request.user, lang=task_lang(request), config=tree_config())
    return [(task_type, TASK_TITLES[task_type], counts[task_type]) for task_type in TASK_TITLES if task_type in counts]


@terms_accepted_required
def dashboard(request):
    return render(request, "tasks/dashboard.html", {
        "available": [] if request.user.is_banned else _availability(request), "stats": _stats(request.user),
        "lang_name": LANGUAGES[task_lang(request)],
    })


@terms_accepted_required
def available(request):
    return render(request, "tasks/_available.html", {"available": _availability(request)})


@require_POST
@terms_accepted_required
def task_new(request):
    if throttled := _throttled(request, "task_request"):
        return throttled
    task_type = request.POST.get("type", "random")
    try:
        task = services.task_request(user=request.user, task_type=task_type, lang=task_lang(request))
    except ValidationError as error:
        return render(request, "tasks/no_task.html", {"error": " ".join(error.messages),
                                                      "code": getattr(error, "code", "")}, status=_status(error))
    _session_started_at(request)
    return redirect("task", task_id=task.pk)


def _status(error: ValidationError) -> int:
    return getattr(error, "status_code", 400)


def _throttled(request, scope: str) -> HttpResponse | None:
    """The API's rate limits hold on the pages too: the same scopes and counters, per user and per IP."""
    wait = check_throttled(request, scope)
    if wait is None:
        return None
    response = render(request, "tasks/no_task.html", {
        "error": gettext("Too many requests: wait a moment and try again."), "code": "throttled"}, status=429)
    response["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _task_context(task: Task) -> dict:
    payload = task.payload
    context = {"task": task, "title": TASK_TITLES[task.type], "conversation": payload.get("conversation", []),
               "max_length": tree_config().max_text_length}
    context["guidelines"] = task_guidelines(task.type)
    if task.type in services.LABEL_TASKS:
        valid = payload.get("valid_labels", [])
        context["labels"] = [
            {"name": name, "help": LABEL_HELP[name], "guide": LABEL_GUIDE.get(name), "likert": name in LIKERT_LABELS,
             "mandatory": name in payload.get("mandatory_labels", []),
             "choices": LIKERT_STEPS if name in LIKERT_LABELS else YES_NO_STEPS}
            for name in valid if name in LABEL_HELP
        ]
        context["reviewed"] = context["conversation"][-1] if context["conversation"] else None
        context["conversation"] = context["conversation"][:-1]
    if task.type in services.RANK_TASKS:
        context["replies"] = payload.get("reply_messages", [])
    return context


def _own_task(request, task_id) -> Task:
    return get_object_or_404(Task, pk=task_id, user=request.user)


@terms_accepted_required
def task_page(request, task_id):
    task = _own_task(request, task_id)
    if not task.is_open:
        return redirect("dashboard")
    progress = session_progress(user=request.user, since=_session_started_at(request))
    return render(request, "tasks/task.html", _task_context(task) | {"progress": progress})


def _session_started_at(request) -> datetime:
    """When this login session took its first task: the progress strip counts from there."""
    started = request.session.get(SESSION_START_KEY)
    if started is None:  # written once per session, on the first task request
        started = request.session[SESSION_START_KEY] = timezone.now().isoformat()
    return datetime.fromisoformat(started)


def _labels_from(post) -> dict[str, float]:
    labels = {}
    for name in YES_NO_LABELS + LIKERT_LABELS:
        value = post.get(f"label-{name}")
        if value not in (None, ""):
            try:
                labels[name] = float(value)
            except ValueError:
                labels[name] = value  # the service refuses it with a clear message
    return labels


def _total_score(user) -> int:
    return UserScore.objects.filter(user=user, frame="total").values_list("score", flat=True).first() or 0


@require_http_methods(["GET", "POST"])
@terms_accepted_required
def task_submit(request, task_id):
    task = _own_task(request, task_id)
    if request.method == "GET":  # the form's address opened or reloaded: the task, or its thank-you page
        return redirect("task-done" if task.done else "task", task_id=task.pk)
    if throttled := _throttled(request, "submission"):
        return throttled
    before = _total_score(request.user)
    reported = task.type in services.LABEL_TASKS and request.POST.get("report") == "on"
    try:
        if task.type in services.RANK_TASKS:
            not_rankable = request.POST.get("not_rankable") == "on"  # the box wins over the list's order
            services.task_submit(user=request.user, task_id=task.pk, not_rankable=not_rankable,
                                 ranking=None if not_rankable else request.POST.getlist("ranking"))
        elif task.type in services.LABEL_TASKS:
            services.task_submit(user=request.user, task_id=task.pk, labels=_labels_from(request.POST),
                                 text=request.POST.get("comment", ""), report=reported)
        else:
            services.task_submit(user=request.user, task_id=task.pk, text=request.POST.get("text", ""),
                                 client_id=f"web-{task.pk}")
    except ValidationError as error:
        context = _task_context(task) | {"error": " ".join(error.messages), "posted": request.POST}
        return render(request, "tasks/task.html", context, status=_status(error))
    after = user_scores_refresh(user=request.user)["total"].score
    request.session[DONE_SESSION_KEY] = {"task": str(task.pk), "earned": after - before, "reported": reported}
    return redirect("task-done", task_id=task.pk)  # a reload then shows the page again instead of posting again


@terms_accepted_required
def task_done(request, task_id):
    """The thank-you page after a submission; what it earned is kept in the session by task_submit."""
    task = _own_task(request, task_id)
    if not task.done:
        return redirect("task", task_id=task.pk)
    outcome = request.session.get(DONE_SESSION_KEY) or {}
    if outcome.get("task") != str(task.pk):
        outcome = {}
    total = _total_score(request.user)
    return render(request, "tasks/done.html", {
        "task": task, "title": TASK_TITLES[task.type], "earned": outcome.get("earned"),
        "reported": outcome.get("reported", False), "total": total, "level": scoring.level(total)})


@require_POST
@terms_accepted_required
def task_skip(request, task_id):
    task = _own_task(request, task_id)
    try:
        services.task_nack(user=request.user, task_id=task.pk, reason=request.POST.get("reason", ""))
    except ValidationError as error:
        return render(request, "tasks/no_task.html", {"error": " ".join(error.messages)}, status=_status(error))
    messages.success(request, gettext("Task skipped."))
    return redirect("dashboard")


@require_POST
@login_required
def preview(request):
    return HttpResponse(render_markdown(request.POST.get("text", "")[:20000]))


@require_POST
@login_required
def lang_check(request):
    """Warn when the text being typed seems to be in another language than the task's."""
    text = request.POST.get("text", "")
    expected = request.POST.get("lang", "")
    detected = None
    if len(text.strip()) >= 30 and expected:
        import py3langid

        code, _ = py3langid.classify(text[:2000])
        base = expected.split("-")[0].lower()
        if code != base:
            detected = code
    return render(request, "tasks/_lang_warning.html", {"detected": detected and _language_name(detected),
                                                        "expected": LANGUAGES.get(expected)})


def _language_name(code: str) -> str:
    """A language's name in the interface language, also for a detected language the site does not offer."""
    if code in LANGUAGES:
        return LANGUAGES[code]
    try:
        return get_language_info(code)["name_translated"]
    except KeyError:
        return code


@require_POST
@login_required
def message_report(request, message_id):
    try:
        services.message_report(user=request.user, message_id=message_id, reason=request.POST.get("reason", ""))
    except ValidationError as error:
        return HttpResponse(format_html('<span class="error" role="alert">{}</span>', " ".join(error.messages)),
                            status=_status(error))
    return HttpResponse(format_html('<span class="ok" role="status">{}</span>', gettext("Reported. Thank you.")))


@require_POST
@login_required
def language(request):
    """The language the user works in, for the whole session."""
    lang = request.POST.get("lang", "")
    if lang in LANGUAGES:
        request.session["task_lang"] = lang
    back = request.POST.get("next") or request.headers.get("referer") or "/"
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        back = "/"
    return HttpResponseRedirect(back)  # a URL, never a view name: redirect("0") would try to reverse it


def terms(request):
    """The terms of service; a logged-in contributor accepts them here before the first task."""
    next_url = request.POST.get("next") or request.GET.get("next") or reverse("dashboard")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        next_url = reverse("dashboard")
    if request.method == "POST" and request.user.is_authenticated:
        if request.POST.get("accept") == "on":
            account_services.tos_accept(user=request.user)
            return HttpResponseRedirect(next_url)  # a URL, never a view name (see language)
        error = gettext("Tick the box to accept the terms.")
        return render(request, "tasks/terms.html", {"next": next_url, "error": error}, status=400)
    return render(request, "tasks/terms.html", {"next": next_url})
