"""Moderation in the admin: messages, trees and the flagged queue. Every action calls a service,
which checks the moderator's permission and writes the audit log."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from oasst.moderation_forms import DISMISS, HALT, REMOVAL, RESTORE, RESUME, confirm_then_apply, reason_form
from oasst.text import mark_hidden
from tasks import (
    admin_users,  # noqa: F401  (registers the User admin)
    selectors,
    services,
)
from tasks.admin_export import TreeExportActions
from tasks.admin_reports import report_urls
from tasks.admin_scores import ScoreBandFilter, score_urls
from tasks.models import FlaggedMessage, Message, MessageRevision, MessageTree, TreeState

# Message.review_state's values as the moderator reads them, in their language
REVIEW_STATES = {"accepted": _("accepted"), "rejected": _("rejected"), "undecided": _("undecided")}


class BoundedCountPaginator(Paginator):
    """Counts at most 10,001 rows: the big tables are never fully COUNTed for a changelist."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.CAP + 1].count()


def _run(modeladmin, request, queryset, service, permission_label: str, **kwargs) -> None:
    done, refused = 0, []
    for obj in queryset:
        try:
            service(actor=request.user, **{permission_label: obj.pk}, **kwargs)
            done += 1
        except ValidationError as error:
            refused.append(f"{obj}: {' '.join(error.messages)}")
    if done:
        modeladmin.message_user(request, ngettext("%(n)s done.", "%(n)s done.", done) % {"n": done}, messages.SUCCESS)
    for line in refused:
        modeladmin.message_user(request, line, messages.ERROR)


def _with_reason(modeladmin, request, queryset, *, title: str, action: str, choices, each, listed=None):
    """Confirm on a page that lists the selected rows (or `listed`) and asks for a reason; then
    `each(reason)` runs the action."""
    return confirm_then_apply(modeladmin, request, queryset, form=reason_form(request, choices), title=title,
                              action=action, listed=listed, apply=lambda data: each(data["full_reason"]))


class FlaggedFilter(admin.SimpleListFilter):
    title = _("flagged")
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("open", _("In the flagged queue")), ("24h", _("Reported in the last 24 h"))]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(Exists(FlaggedMessage.objects.filter(message=OuterRef("pk"), processed=False)))
        if self.value() == "24h":
            since = timezone.now() - timedelta(hours=24)
            return queryset.filter(Exists(FlaggedMessage.objects.filter(message=OuterRef("pk"),
                                                                        updated_at__gte=since)))
        return queryset


class MessageForm(forms.ModelForm):
    reason = forms.CharField(required=False, max_length=500, help_text=_("Why you edit this text (audit log)."))

    class Meta:
        model = Message
        fields = ["text"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    form = MessageForm
    list_display = ("excerpt", "author", "role", "lang", "tree_state", "review_state", "red_flags", "emoji_summary",
                    "reward_score", "deleted", "created_at")
    list_select_related = ("author", "tree")
    list_filter = ("lang", "role", "tree__state", "review_result", "deleted", "synthetic", FlaggedFilter,
                   ScoreBandFilter, "created_at")
    search_fields = ("text", "author__username", "=id")
    paginator = BoundedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-created_at",)
    date_hierarchy = None
    readonly_fields = ("id", "tree", "parent", "author", "role", "lang", "depth", "created_at", "review_count",
                       "review_result", "rank", "deleted", "synthetic", "model_name", "emoji_summary",
                       "labels_shown", "red_flags", "edited")
    fieldsets = ((None, {"fields": ("text", "reason")}),
                 (_("Message"), {"fields": readonly_fields}))
    change_form_template = "admin/tasks/message/change_form.html"
    actions = ["delete_with_subtree", "undelete_with_ancestors", "mark_spam", "add_to_flagged_queue", "halt_tree",
               "resume_tree"]

    @admin.display(description=_("text"))
    def excerpt(self, message: Message) -> str:
        return mark_hidden(message.text[:90] + ("…" if len(message.text) > 90 else ""))

    @admin.display(description=_("tree state"), ordering="tree__state")
    def tree_state(self, message: Message) -> str:
        return message.tree.get_state_display()

    @admin.display(description=_("review state"))
    def review_state(self, message: Message) -> str:
        return REVIEW_STATES[message.review_state]

    @admin.display(description=_("emojis"))
    def emoji_summary(self, message: Message) -> str:
        return " ".join(f"{code}:{n}" for code, n in message.emojis.items())

    @admin.display(description=_("labels"))
    def labels_shown(self, message: Message) -> str:
        """The reviews' mean per label as "spam: 0.0 (2 reviews), quality: 0.75 (2 reviews)", not raw JSON."""
        return ", ".join(ngettext("%(name)s: %(value)s (%(count)s review)", "%(name)s: %(value)s (%(count)s reviews)",
                                  entry["count"])
                         % {"name": name, "value": round(entry["value"], 2), "count": entry["count"]}
                         for name, entry in message.labels.items()) or "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # moderators soft-delete with the action, which keeps the data

    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm("tasks.moderate_message")

    def has_moderate_tree_permission(self, request) -> bool:
        return request.user.has_perm("tasks.moderate_tree")

    def save_model(self, request, obj, form, change):
        try:
            services.message_edit(actor=request.user, message_id=obj.pk, text=form.cleaned_data["text"],
                                  reason=form.cleaned_data.get("reason", ""))
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            messages_by_id = {m.pk: m for m in selectors.tree_messages(obj.tree_id)}
            children: dict = {}
            for message in messages_by_id.values():
                children.setdefault(message.parent_id, []).append(message)
            context["tree_rows"] = list(_walk(children, None, 0))
            context["revisions"] = MessageRevision.objects.filter(message=obj).select_related("editor")
            context["flag"] = FlaggedMessage.objects.filter(message=obj).first()
            if self.has_moderate_permission(request):
                step = "undelete" if obj.deleted else "delete"
                context["moderate_step"] = (reverse("admin:tasks_message_moderate", args=[obj.pk, step]),
                                            MESSAGE_STEPS[step][0])
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _on_messages(self, request, queryset, title: str, action: str, choices, service):
        return _with_reason(self, request, queryset, title=title, action=action, choices=choices,
                            each=lambda reason: _run(self, request, queryset, service, "message_id", reason=reason))

    @admin.action(description=_("Delete with subtree…"), permissions=["moderate"])
    def delete_with_subtree(self, request, queryset):
        return self._on_messages(request, queryset, _("Delete with subtree"), "delete_with_subtree", REMOVAL,
                                 services.message_delete)

    @admin.action(description=_("Undelete with ancestors…"), permissions=["moderate"])
    def undelete_with_ancestors(self, request, queryset):
        return self._on_messages(request, queryset, _("Undelete with ancestors"), "undelete_with_ancestors", RESTORE,
                                 services.message_undelete)

    @admin.action(description=_("Mark as spam…"), permissions=["moderate"])
    def mark_spam(self, request, queryset):
        return self._on_messages(request, queryset, _("Mark as spam"), "mark_spam", REMOVAL, services.message_mark_spam)

    @admin.action(description=_("Move to the flagged queue…"), permissions=["moderate"])
    def add_to_flagged_queue(self, request, queryset):
        return self._on_messages(request, queryset, _("Move to the flagged queue"), "add_to_flagged_queue", REMOVAL,
                                 services.message_flag)

    @admin.action(description=_("Halt their trees…"), permissions=["moderate_tree"])
    def halt_tree(self, request, queryset):
        trees = MessageTree.objects.filter(pk__in=queryset.values("tree_id"))
        return _with_reason(self, request, queryset, title=_("Halt their trees"), action="halt_tree", choices=HALT,
                            each=lambda reason: _halt(self, request, trees, reason))

    @admin.action(description=_("Resume their trees…"), permissions=["moderate_tree"])
    def resume_tree(self, request, queryset):
        trees = MessageTree.objects.filter(pk__in=queryset.values("tree_id"))
        return _with_reason(self, request, queryset, title=_("Resume their trees"), action="resume_tree",
                            choices=RESUME, each=lambda reason: _resume(self, request, trees, reason))

    def get_urls(self):
        return [*score_urls(self.admin_site),
                path("<path:object_id>/moderate/<str:step>/", self.admin_site.admin_view(self.moderate),
                     name="tasks_message_moderate"), *super().get_urls()]

    def moderate(self, request, object_id: str, step: str):
        """Delete or undelete one message from its own page, with a reason."""
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        if step not in MESSAGE_STEPS:
            raise Http404
        message = self.get_object(request, object_id)
        if message is None:
            raise Http404
        title, choices, service = MESSAGE_STEPS[step]
        back = reverse("admin:tasks_message_change", args=[message.pk])
        form = reason_form(request, choices, applied=request.method == "POST")
        response = confirm_then_apply(
            self, request, [message], form=form, title=title, action="", back=back,
            apply=lambda data: _run(self, request, [message], service, "message_id", reason=data["full_reason"]))
        return response or HttpResponseRedirect(back)


MESSAGE_STEPS = {"delete": (_("Delete with subtree"), REMOVAL, services.message_delete),
                 "undelete": (_("Undelete with ancestors"), RESTORE, services.message_undelete)}


def _halt(modeladmin, request, trees, reason: str) -> None:
    _run(modeladmin, request, trees, services.tree_move, "tree_id", state=TreeState.HALTED_BY_MODERATOR, reason=reason)


def _resume(modeladmin, request, trees, reason: str) -> None:
    for tree in trees.filter(state=TreeState.HALTED_BY_MODERATOR):
        _run(modeladmin, request, [tree], services.tree_move, "tree_id", state=tree.halted_from_state, reason=reason)


def _walk(children: dict, parent_id, depth: int):
    for message in sorted(children.get(parent_id, []), key=lambda m: (m.rank is None, m.rank or 0, m.created_at)):
        yield depth, message
        yield from _walk(children, message.pk, depth + 1)


class MoveTreeForm(forms.Form):
    state = forms.ChoiceField(choices=TreeState.choices)
    reason = forms.CharField(max_length=500)


@admin.register(MessageTree)
class MessageTreeAdmin(TreeExportActions, admin.ModelAdmin):
    list_display = ("id", "state", "lang", "message_count", "accepted_count", "awaiting_review", "created_at",
                    "updated_at")
    list_filter = ("state", "lang", "origin")
    search_fields = ("=id",)
    paginator = BoundedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-updated_at",)
    readonly_fields = [field.name for field in MessageTree._meta.fields]
    change_form_template = "admin/tasks/messagetree/change_form.html"
    actions = ["halt", "resume", "abort", "move_to_state", "download_export", "download_export_real_ids",
               "download_export_hf"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm("tasks.moderate_tree")

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            children: dict = {}
            for message in selectors.tree_messages(obj.pk):
                children.setdefault(message.parent_id, []).append(message)
            context["tree_rows"] = list(_walk(children, None, 0))
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description=_("Halt…"), permissions=["moderate"])
    def halt(self, request, queryset):
        return _with_reason(self, request, queryset, title=_("Halt"), action="halt", choices=HALT,
                            each=lambda reason: _halt(self, request, queryset, reason))

    @admin.action(description=_("Resume…"), permissions=["moderate"])
    def resume(self, request, queryset):
        return _with_reason(self, request, queryset, title=_("Resume"), action="resume", choices=RESUME,
                            each=lambda reason: _resume(self, request, queryset, reason))

    @admin.action(description=_("Abort…"), permissions=["moderate"])
    def abort(self, request, queryset):
        return _with_reason(self, request, queryset, title=_("Abort"), action="abort", choices=REMOVAL,
                            each=lambda reason: _run(self, request, queryset, services.tree_move, "tree_id",
                                                     state=TreeState.ABORTED_LOW_GRADE, reason=reason))

    @admin.action(description=_("Move to a state…"), permissions=["moderate"])
    def move_to_state(self, request, queryset):
        form = MoveTreeForm(request.POST if "apply" in request.POST else None)
        return confirm_then_apply(
            self, request, queryset, form=form, title=_("Move"), action="move_to_state",
            help_text=_("Only moves along the tree's arrows are made (halt, resume, abort, or the next state); "
                        "others are refused and listed."),
            apply=lambda data: _run(self, request, queryset, services.tree_move, "tree_id", state=data["state"],
                                    reason=data["reason"]))


@admin.register(FlaggedMessage)
class FlaggedMessageAdmin(admin.ModelAdmin):
    """The flagged queue: one click (or one key) per decision."""

    list_display = ("message_excerpt", "author", "reports", "last_reasons", "updated_at", "decisions")
    list_select_related = ("message", "message__author")
    list_filter = ("processed",)
    ordering = ("processed", "-updated_at")
    paginator = BoundedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    readonly_fields = ("message", "reports", "reasons", "created_at", "updated_at", "processed")
    actions = ["dismiss", "delete_messages", "delete_and_ban"]

    class Media:
        js = ["tasks/flag_queue.js"]

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET" and "processed__exact" not in request.GET:  # open flags first
            query = request.GET.copy()
            query["processed__exact"] = "0"
            return redirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [path("<int:flag_id>/resolve/<str:decision>/", self.admin_site.admin_view(self.resolve),
                     name="tasks_flaggedmessage_resolve"),
                *report_urls(self.admin_site), *super().get_urls()]

    def resolve(self, request, flag_id: int, decision: str):
        """One flag's decision, on a page that shows the message and asks for the reason."""
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        if decision not in FLAG_DECISIONS:
            raise Http404
        flag = get_object_or_404(FlaggedMessage.objects.select_related("message"), pk=flag_id)
        title, choices = FLAG_DECISIONS[decision]
        form = reason_form(request, choices, applied=request.method == "POST")
        response = confirm_then_apply(
            self, request, [flag], form=form, title=title, action="", listed=[flag.message],
            back=reverse("admin:tasks_flaggedmessage_changelist"),
            apply=lambda data: self._resolve_one(request, flag, decision, data["full_reason"]))
        if response is not None:
            return response
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = reverse("admin:tasks_flaggedmessage_changelist")  # never a redirect off the site
        return HttpResponseRedirect(back)  # a URL, never a view name: redirect("0") would try to reverse it

    def _resolve_one(self, request, flag: FlaggedMessage, decision: str, reason: str) -> None:
        try:
            services.flag_resolve(actor=request.user, flag_id=flag.pk, decision=decision, reason=reason)
            self.message_user(request, gettext("Flag %(id)s: %(decision)s.") % {"id": flag.pk, "decision": decision},
                              messages.SUCCESS)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)

    @admin.display(description=_("message"))
    def message_excerpt(self, flag: FlaggedMessage) -> str:
        url = reverse("admin:tasks_message_change", args=[flag.message_id])
        return format_html('<a href="{}">{}</a>', url, mark_hidden(flag.message.text[:100]))

    @admin.display(description=_("author"))
    def author(self, flag: FlaggedMessage) -> str:
        return flag.message.author.username if flag.message.author else "—"

    @admin.display(description=_("reasons"))
    def last_reasons(self, flag: FlaggedMessage) -> str:
        return mark_hidden("; ".join(flag.reasons[-3:]))

    @admin.display(description=_("decide"))
    def decisions(self, flag: FlaggedMessage) -> str:
        if flag.processed:
            return gettext("processed")
        buttons = []
        for decision, label, key in (("dismiss", gettext("Dismiss"), "d"), ("delete", gettext("Delete"), "x"),
                                     ("ban", gettext("Delete + ban author"), "b")):
            url = reverse("admin:tasks_flaggedmessage_resolve", args=[flag.pk, decision])
            buttons.append(format_html(
                '<a href="{}" class="button flag-decision" data-decision="{}" title="{}">{}…</a>',
                url, decision, gettext("key: %(key)s") % {"key": key}, label))
        return format_html("{}" * len(buttons), *buttons)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm("tasks.moderate_message")

    def _resolve_all(self, request, queryset, decision: str, action: str):
        title, choices = FLAG_DECISIONS[decision]
        return _with_reason(self, request, queryset, title=title, action=action, choices=choices,
                            listed=[flag.message for flag in queryset.select_related("message")],
                            each=lambda reason: _run(self, request, queryset, services.flag_resolve, "flag_id",
                                                     decision=decision, reason=reason))

    @admin.action(description=_("Dismiss…"), permissions=["moderate"])
    def dismiss(self, request, queryset):
        return self._resolve_all(request, queryset, "dismiss", "dismiss")

    @admin.action(description=_("Delete the messages…"), permissions=["moderate"])
    def delete_messages(self, request, queryset):
        return self._resolve_all(request, queryset, "delete", "delete_messages")

    @admin.action(description=_("Delete the messages and ban their authors…"), permissions=["moderate"])
    def delete_and_ban(self, request, queryset):
        return self._resolve_all(request, queryset, "ban", "delete_and_ban")


FLAG_DECISIONS = {"dismiss": (_("Dismiss"), DISMISS), "delete": (_("Delete the message"), REMOVAL),
                  "ban": (_("Delete the message and ban its author"), REMOVAL)}
