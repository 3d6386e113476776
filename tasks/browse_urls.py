"""The Messages pages, mounted under /messages/ (reports go to `message-report` in tasks.urls)."""

from django.urls import path

from tasks import browse

urlpatterns = [
    path("", browse.message_list, name="messages"),
    path("<uuid:message_id>/", browse.message_tree, name="message-tree"),
    path("<uuid:message_id>/emoji/", browse.message_emoji, name="message-emoji"),
]
