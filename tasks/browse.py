"""The Messages pages: browse and search messages, read a whole conversation tree, react with
emoji and report. The reads are here because only these pages use them; writes go through
`tasks.services` (emoji_set; reports use the existing `message-report` view)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import QuerySet, Subquery
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from oasst.languages import language_choices
from tasks import selectors, services
from tasks.models import Emoji, EmojiReaction, Message, Role

PAGE_SIZE = 25
MAX_QUERY = 200
MAX_PAGE = 100_000  # an offset past this is no page anyone reads, and past 2**63 the database refuses it
REVIEW_STATES = {"accepted": True, "rejected": False, "undecided": None}
# Emoji code -> (symbol, accessible name), in the order of tasks.models.Emoji.
EMOJI_DISPLAY = {
    Emoji.PLUS_ONE: ("👍", _("Thumbs up")),
    Emoji.MINUS_ONE: ("👎", _("Thumbs down")),
    Emoji.RED_FLAG: ("🚩", _("Red flag")),
    Emoji.HUNDRED: ("💯", _("Hundred points")),
    Emoji.ROFL: ("🤣", _("Rolling on the floor laughing")),
    Emoji.CLAP: ("👏", _("Clapping")),
    Emoji.DIAMOND: ("💎", _("Diamond")),
    Emoji.HEART_EYES: ("😍", _("Heart eyes")),
    Emoji.DISAPPOINTED: ("😞", _("Disappointed")),
    Emoji.POOP: ("💩", _("Poop")),
    Emoji.SKULL: ("💀", _("Skull")),
}


class MessageFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), max_length=MAX_QUERY, required=False)
    lang = forms.ChoiceField(label=_("Language"), required=False,
                             choices=lambda: [("", _("All languages")), *language_choices()])
    role = forms.ChoiceField(label=_("Role"), required=False,
                             choices=[("", _("All roles")), (Role.PROMPTER, _("User")),
                                      (Role.ASSISTANT, _("Assistant"))])
    review = forms.ChoiceField(label=_("Review"), required=False,
                               choices=[("", _("Any review state")), ("accepted", _("Accepted")),
                                        ("rejected", _("Rejected")), ("undecided", _("Undecided"))])
    page = forms.IntegerField(min_value=1, max_value=MAX_PAGE, required=False)


def messages_matching(*, q: str = "", lang: str = "", role: str = "", review: str = "") -> QuerySet[Message]:
    """Non-deleted messages, newest first. Text search is PostgreSQL full-text search ('simple'
    configuration, web-search syntax) there and a plain contains elsewhere."""
    qs = selectors.visible_messages()
    if lang:
        qs = qs.filter(lang=lang)
    if role:
        qs = qs.filter(role=role)
    if review:
        qs = qs.filter(review_result=REVIEW_STATES[review])
    if q:
        if connection.vendor == "postgresql":
            from django.contrib.postgres.search import SearchQuery, SearchVector

            qs = qs.alias(document=SearchVector("text", config="simple")).filter(
                document=SearchQuery(q, config="simple", search_type="websearch"))
        else:
            qs = qs.filter(text__icontains=q)
    return qs.only("id", "tree_id", "parent_id", "role", "text", "lang", "depth", "created_at", "review_count",
                   "review_result", "rank", "emojis").order_by("-created_at", "-id")


def page_of(qs: QuerySet, *, page: int, size: int) -> tuple[list, bool]:
    """One page and whether another follows, from one query of size + 1 rows (no COUNT)."""
    start = (page - 1) * size
    rows = list(qs[start:start + size + 1])
    return rows[:size], len(rows) > size


@dataclass
class Node:
    message: Message
    replies: list[Node] = field(default_factory=list)
    bar: dict | None = None  # the reaction bar, filled in for the reader


def visible_tree(message_id) -> tuple[Node | None, dict]:
    """The message's tree without deleted messages and their subtrees, from one query: the root
    node (None when the tree has no visible root) and the visible nodes by message id."""
    tree_of_message = Message.objects.filter(pk=message_id).values("tree_id")[:1]
    rows = (Message.objects.filter(tree_id=Subquery(tree_of_message)).select_related("tree")
            .order_by("depth", "created_at"))
    children: dict = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row)
    for siblings in children.values():  # best rank first, unranked after, then oldest first
        siblings.sort(key=lambda m: (m.rank is None, m.rank or 0, m.created_at))
    roots = [m for m in children.get(None, []) if not m.deleted]
    if not roots:
        return None, {}
    visible: dict = {}

    def build(message: Message) -> Node:
        node = visible[message.pk] = Node(message)
        node.replies = [build(child) for child in children.get(message.pk, []) if not child.deleted]
        return node

    return build(roots[0]), visible


ALWAYS_SHOWN = {Emoji.PLUS_ONE, Emoji.MINUS_ONE}


def reaction_bar(*, message: Message, mine: set, user) -> dict:
    """The buttons under a message: +1 and -1, the emojis someone used, and the rest behind "more"."""
    emojis = [{"code": code, "symbol": symbol, "name": name, "count": message.emojis.get(code, 0),
               "pressed": code in mine} for code, (symbol, name) in EMOJI_DISPLAY.items()]
    shown = [e for e in emojis if e["code"] in ALWAYS_SHOWN or e["count"] or e["pressed"]]
    return {"message": message, "own": message.author_id is not None and message.author_id == user.pk,
            "shown": shown, "more": [e for e in emojis if e not in shown]}


@login_required
def message_list(request):
    form = MessageFilterForm(request.GET)
    form.is_valid()  # invalid filters are dropped; the valid ones still apply
    filters = {name: form.cleaned_data.get(name) or "" for name in ("q", "lang", "role", "review")}
    filters["q"] = filters["q"].strip()
    page = form.cleaned_data.get("page") or 1
    results, has_next = page_of(messages_matching(**filters), page=page, size=PAGE_SIZE)
    for message in results:
        message.votes_up = message.emojis.get(Emoji.PLUS_ONE, 0)
        message.votes_down = message.emojis.get(Emoji.MINUS_ONE, 0)
    context = {"form": form, "results": results, "page": page, "has_next": has_next,
               "filtered": any(filters.values())}
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, "tasks/browse/_results.html" if partial else "tasks/browse/list.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
def message_tree(request, message_id):
    root, visible = visible_tree(message_id)
    if message_id not in visible:
        raise Http404("No such message.")
    mine: dict = {}
    for reacted_id, emoji in EmojiReaction.objects.filter(user=request.user, message_id__in=list(visible)) \
            .values_list("message_id", "emoji"):
        mine.setdefault(reacted_id, set()).add(emoji)
    for pk, node in visible.items():
        node.bar = reaction_bar(message=node.message, mine=mine.get(pk, set()), user=request.user)
    selected = visible[message_id].message
    return render(request, "tasks/browse/tree.html", {
        "root": root, "selected": selected, "tree": selected.tree, "count": len(visible),
    })


def _emoji_and_op(post) -> tuple[str, str]:
    """A reaction button posts add_emoji=<emoji> or remove_emoji=<emoji> (a control named plain
    "remove" would shadow the form element's remove() method in the browser)."""
    for op in ("add", "remove"):
        if f"{op}_emoji" in post:
            return post[f"{op}_emoji"], op
    return post.get("emoji", ""), post.get("op", "")


@require_POST
@login_required
def message_emoji(request, message_id):
    emoji, op = _emoji_and_op(request.POST)
    error, status = None, 200
    try:
        services.emoji_set(user=request.user, message_id=message_id, emoji=emoji, op=op)
    except ValidationError as refusal:
        error, status = " ".join(refusal.messages), getattr(refusal, "status_code", 400)
    if not request.htmx:
        if error:
            flash.error(request, error)
        return redirect(f"{reverse('message-tree', args=[message_id])}#m-{message_id}")
    message = selectors.visible_messages().filter(pk=message_id).only("id", "author_id", "emojis").first()
    if message is None:
        return HttpResponse(error or _("No such message."), status=404)
    mine = set(EmojiReaction.objects.filter(user=request.user, message_id=message_id).values_list("emoji", flat=True))
    bar = reaction_bar(message=message, mine=mine, user=request.user)
    return render(request, "tasks/browse/_reactions.html", {"bar": bar, "error": error}, status=status)
