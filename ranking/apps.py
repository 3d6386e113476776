from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from oasst.signals import account_deleted, user_data_requested


class RankingConfig(AppConfig):
    name = "ranking"
    verbose_name = _("Rankings and scoring")

    def ready(self) -> None:
        """Act on oasst's account signals (oasst is below ranking and cannot call it): a deleted
        account loses its scores; "download my data" gets ranking's sections."""
        from ranking.selectors import user_data_sections  # app-registry: imports models
        from ranking.services import scores_delete_on_account_deleted  # app-registry: imports models

        account_deleted.connect(scores_delete_on_account_deleted, dispatch_uid="ranking-account-deleted")
        user_data_requested.connect(user_data_sections, dispatch_uid="ranking-user-data")
