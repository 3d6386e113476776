from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_migrate

from oasst.middleware import UiLanguageMiddleware


class OasstConfig(AppConfig):
    name = "oasst"
    verbose_name = "OASST"

    def ready(self) -> None:
        from oasst.schedule import beat_schedule_mirror_after_migrate  # app-registry: imports models
        from oasst.site import site_from_settings_after_migrate  # app-registry: imports models

        post_migrate.connect(beat_schedule_mirror_after_migrate, sender=self)
        post_migrate.connect(site_from_settings_after_migrate, sender=self)
        user_logged_in.connect(UiLanguageMiddleware.after_login, dispatch_uid="oasst.ui_language_after_login")
