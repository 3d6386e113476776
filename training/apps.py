from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from oasst.signals import user_data_requested
from tasks.signals import reply_accepted


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = _("Training runs")

    def ready(self) -> None:
        """"Download my data" gets the training app's section (oasst.signals; oasst cannot import training), and
        every process registers the runs' jobs, which training.services sends by name; an accepted reply
        (tasks.signals) is scored by the reward model in service."""
        # app-registry: imports models
        from training import jobs  # noqa: F401
        from training.selectors import user_data_sections  # app-registry: imports models
        from training.serving import reply_accepted_score  # app-registry: imports models

        user_data_requested.connect(user_data_sections, dispatch_uid="training-user-data")
        reply_accepted.connect(reply_accepted_score, dispatch_uid="training-reply-accepted")
