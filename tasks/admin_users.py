"""Admin for users: find a contributor fast, see their state, scores and troll score, ban, unban,
purge, anonymise; and the moderation audit log (read-only). It lives in tasks, above the data it
shows (scores from ranking) and the purge it runs (content moderation); bans and anonymising go
through oasst.moderation, which checks the permission and writes the audit log. Registered when the
admin imports tasks.admin (the User admin after django.contrib.auth's, as before the move)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseForbidden
from django.utils.html import escape
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from oasst import moderation
from oasst.models import ModerationEvent, User
from oasst.moderation_forms import REMOVAL, RESTORE, confirm_then_apply, reason_form
from ranking.selectors import user_scores
from tasks.selectors import troll_counts
from tasks.services import user_purge_messages


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500)


class PurgeForm(ReasonForm):
    since = forms.DateTimeField(required=False, help_text=_("Messages created from (empty: the first)."))
    until = forms.DateTimeField(required=False, help_text=_("Messages created until (empty: now)."))


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "display_name", "email", "preferred_language", "is_banned",
                    "is_staff", "last_activity_at", "date_joined")
    list_filter = ("is_banned", "is_staff", "is_superuser", "is_active", "preferred_language",
                   "show_on_leaderboard", "groups")
    search_fields = ("username", "display_name", "email")
    ordering = ("-date_joined",)
    readonly_fields = ("last_login", "date_joined", "last_activity_at", "tos_accepted_at",
                       "streak_days", "streak_last_day_at", "is_banned", "ban_reason")
    change_form_template = "admin/oasst/user/change_form.html"
    actions = ["ban", "unban", "purge_messages", "anonymise"]
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Profile"), {"fields": ("display_name", "email", "preferred_language", "show_on_leaderboard")}),
        (_("Moderation"), {"fields": ("is_active", "is_banned", "ban_reason", "moderator_notes")}),
        (_("Activity"), {"fields": ("tos_accepted_at", "last_activity_at", "streak_days", "streak_last_day_at",
                                 "last_login", "date_joined")}),
        (_("Permissions"), {"classes": ("collapse",),
                         "fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
    )
    list_per_page = 100
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:  # moderators cannot grant rights, least of all to themselves
            fields += ["is_staff", "is_superuser", "groups", "user_permissions", "is_active", "password"]
        return fields

    def get_fieldsets(self, request, obj=None):
        """Moderators never see nor set an email: pointing one at their own mailbox, then resetting the
        password, would open any account."""
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser or obj is None:
            return fieldsets
        return [(name, {**options, "fields": tuple(f for f in options["fields"] if f != "email")})
                for name, options in fieldsets]

    def get_list_display(self, request):
        fields = super().get_list_display(request)
        return fields if request.user.is_superuser else tuple(f for f in fields if f != "email")

    def get_search_fields(self, request):
        """Searching by email would tell a moderator whose address it is."""
        fields = super().get_search_fields(request)
        return fields if request.user.is_superuser else tuple(f for f in fields if f != "email")

    def user_change_password(self, request, id, form_url=""):
        if not request.user.is_superuser:  # a password set by a moderator would open any account
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)

    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm("oasst.moderate_user")

    def has_change_permission(self, request, obj=None) -> bool:
        """The change form of a moderator, researcher, staff account or superuser is read-only to
        moderators (see oasst.moderation.check_may_moderate_user)."""
        if obj is not None and not request.user.is_superuser and moderation.protected_account_kind(obj):
            return False
        return super().has_change_permission(request, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and object_id is not None:
            target = self.get_object(request, unquote(object_id))
            if target is not None:
                try:
                    moderation.check_may_moderate_user(request.user, target, action="edit")
                except ValidationError as error:  # a forged POST: the form it came from was read-only
                    return HttpResponseForbidden(escape(" ".join(error.messages)))
        return super().changeform_view(request, object_id, form_url, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["scores"] = user_scores(user=obj)
            trolling = troll_counts(frame="total", user_id=obj.pk)
            context["troll"] = trolling[0] if trolling else None
            context["recent_events"] = ModerationEvent.objects.filter(target_type="user", target_id=str(obj.pk))[:10]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _with_form(self, request, queryset, form, title, action, apply):
        def apply_to_each(data: dict) -> None:
            done = 0
            for user in queryset:
                try:
                    apply(user, data)
                    done += 1
                except ValidationError as error:
                    self.message_user(request, f"{user}: {' '.join(error.messages)}", messages.ERROR)
            if done:
                self.message_user(request, ngettext("%(title)s: %(n)s done.", "%(title)s: %(n)s done.", done)
                                  % {"title": title, "n": done}, messages.SUCCESS)

        return confirm_then_apply(self, request, queryset, form=form, title=title, action=action, apply=apply_to_each)

    def _given(self, request, form_class) -> forms.Form:
        return form_class(request.POST if "apply" in request.POST else None)

    @admin.action(description=_("Ban…"), permissions=["moderate"])
    def ban(self, request, queryset):
        return self._with_form(request, queryset, reason_form(request, REMOVAL), _("Ban"), "ban",
                               lambda user, data: moderation.user_ban(actor=request.user, user_id=user.pk,
                                                                    reason=data["full_reason"]))

    @admin.action(description=_("Unban…"), permissions=["moderate"])
    def unban(self, request, queryset):
        return self._with_form(request, queryset, reason_form(request, RESTORE), _("Unban"), "unban",
                               lambda user, data: moderation.user_unban(actor=request.user, user_id=user.pk,
                                                                      reason=data["full_reason"]))

    @admin.action(description=_("Purge their messages…"), permissions=["moderate"])
    def purge_messages(self, request, queryset):
        return self._with_form(request, queryset, self._given(request, PurgeForm), _("Purge messages"),
                               "purge_messages",
                               lambda user, data: user_purge_messages(
                                   actor=request.user, user_id=user.pk, since=data["since"], until=data["until"],
                                   reason=data["reason"]))

    @admin.action(description=_("Anonymise (delete the account)…"), permissions=["moderate"])
    def anonymise(self, request, queryset):
        return self._with_form(request, queryset, self._given(request, ReasonForm), _("Anonymise"), "anonymise",
                               lambda user, data: moderation.user_anonymise(actor=request.user, user_id=user.pk,
                                                                          reason=data["reason"]))


@admin.register(ModerationEvent)
class ModerationEventAdmin(admin.ModelAdmin):
    """The audit log, read-only for everyone, superusers included."""

    list_display = ("created_at", "actor", "action", "target_type", "target_id", "reason")
    list_filter = ("action", "target_type", ("actor", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("actor",)
    search_fields = ("target_id", "reason", "actor__username")
    readonly_fields = ("created_at", "actor", "action", "target_type", "target_id", "reason", "before", "after")
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
