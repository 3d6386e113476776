from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from oasst.signals import account_deleted, user_banned, user_data_requested


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = _("Conversation trees and tasks")

    def ready(self) -> None:
        """Act on oasst's account signals (oasst is below tasks and cannot call it): a banned or
        deleted user's open tasks are released; "download my data" gets the tasks app's sections."""
        from tasks.selectors import user_data_sections  # app-registry: imports models
        from tasks.services.moderation import open_tasks_release_on_user_signal  # app-registry: imports models

        user_banned.connect(open_tasks_release_on_user_signal, dispatch_uid="tasks-user-banned")
        account_deleted.connect(open_tasks_release_on_user_signal, dispatch_uid="tasks-account-deleted")
        user_data_requested.connect(user_data_sections, dispatch_uid="tasks-user-data")
