"""Admin for users: find a contributor fast, see their state, ban or unban."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from oasst.models import ModerationEvent, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "display_name", "email", "preferred_language", "is_banned",
                    "is_staff", "last_activity_at", "date_joined")
    list_filter = ("is_banned", "is_staff", "is_superuser", "is_active", "preferred_language",
                   "show_on_leaderboard", "groups")
    search_fields = ("username", "display_name", "email")
    ordering = ("-date_joined",)
    readonly_fields = ("last_login", "date_joined", "last_activity_at", "tos_accepted_at",
                       "streak_days", "streak_last_day_at")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Profile", {"fields": ("display_name", "email", "preferred_language", "show_on_leaderboard")}),
        ("Moderation", {"fields": ("is_active", "is_banned", "ban_reason")}),
        ("Activity", {"fields": ("tos_accepted_at", "last_activity_at", "streak_days", "streak_last_day_at",
                                 "last_login", "date_joined")}),
        ("Permissions", {"classes": ("collapse",),
                         "fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
    )
    list_per_page = 100
    show_full_result_count = False


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
