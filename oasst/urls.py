from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from oasst import api, views
from ranking import api as ranking_api
from tasks import api as tasks_api
from tasks import export_api, moderation_api, trollboard_api

api_v1 = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file (?script), not inline: the CSP allows no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("auth/token/", api.TokenObtainView.as_view(), name="token"),
    path("users/me/", ranking_api.UserMeView.as_view(), name="users-me"),
    path("leaderboard/<str:frame>/", ranking_api.LeaderboardView.as_view(), name="leaderboard"),
    path("trollboard/<str:frame>/", trollboard_api.TrollboardView.as_view(), name="trollboard"),
    path("users/me/accept-tos/", tasks_api.AcceptTosView.as_view(), name="accept-tos"),
    path("tasks/", tasks_api.TaskListView.as_view(), name="tasks"),
    path("tasks/available/", tasks_api.TaskAvailableView.as_view(), name="tasks-available"),
    path("tasks/<uuid:task_id>/", tasks_api.TaskDetailView.as_view(), name="task"),
    path("tasks/<uuid:task_id>/ack/", tasks_api.TaskAckView.as_view(), name="task-ack"),
    path("tasks/<uuid:task_id>/nack/", tasks_api.TaskNackView.as_view(), name="task-nack"),
    path("tasks/<uuid:task_id>/submit/", tasks_api.TaskSubmitView.as_view(), name="task-submit"),
    path("messages/<uuid:message_id>/", tasks_api.MessageDetailView.as_view(), name="message"),
    path("messages/<uuid:message_id>/tree/", tasks_api.MessageTreeView.as_view(), name="message-tree"),
    path("messages/<uuid:message_id>/emoji/", tasks_api.MessageEmojiView.as_view(), name="message-emoji"),
    path("messages/<uuid:message_id>/report/", tasks_api.MessageReportView.as_view(), name="message-report"),
    path("moderation/messages/<uuid:message_id>/edit/", moderation_api.ModerationEditView.as_view(),
         name="moderation-message-edit"),
    path("moderation/messages/<uuid:message_id>/<str:action>/", moderation_api.ModerationMessageView.as_view(),
         name="moderation-message"),
    path("moderation/trees/<uuid:tree_id>/move/", moderation_api.ModerationTreeMoveView.as_view(),
         name="moderation-tree-move"),
    path("moderation/flags/", moderation_api.ModerationFlagsView.as_view(), name="moderation-flags"),
    path("exports/", export_api.ExportView.as_view(), name="exports"),
    path("moderation/flags/<int:flag_id>/resolve/", moderation_api.ModerationFlagResolveView.as_view(),
         name="moderation-flag-resolve"),
]

urlpatterns = [
    path("messages/", include("tasks.browse_urls")),
    path("", include("tasks.urls")),
    path("favicon.ico", views.favicon),
    path("i18n/setlang/", views.set_language, name="set_language"),
    path("accounts/", include("allauth.urls")),
    path("profile/", include("tasks.profile_urls")),
    path("leaderboard/", include("ranking.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"))),
]

handler404 = "oasst.views.page_not_found"
handler500 = "oasst.views.server_error"

admin.site.site_header = gettext_lazy("OASST moderation")
admin.site.site_title = gettext_lazy("OASST admin")
