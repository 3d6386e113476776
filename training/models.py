"""Training runs: what was trained, on which export file, with which settings, and how it went."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model", _("reward model")
        PPO = "ppo", _("PPO")
        DPO = "dpo", _("DPO")
        SFT = "sft", _("SFT")
        # a challenger reward model trained and compared with the one in service
        CHALLENGE = "challenge", _("challenge")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    kind = models.CharField(verbose_name=_("kind"), max_length=20, choices=Kind.choices)
    status = models.CharField(
        verbose_name=_("status"), max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True,
    )
    parameters = models.JSONField(verbose_name=_("parameters"), default=dict, blank=True)
    data_file = models.CharField(verbose_name=_("data file"), max_length=1000)
    data_sha256 = models.CharField(verbose_name=_("data sha256"), max_length=64, blank=True)
    output_dir = models.CharField(verbose_name=_("output dir"), max_length=1000)
    code_version = models.CharField(verbose_name=_("code version"), max_length=100, blank=True)
    metrics = models.JSONField(verbose_name=_("metrics"), default=dict, blank=True)
    progress = models.PositiveSmallIntegerField(verbose_name=_("progress"), default=0)
    log_tail = models.TextField(verbose_name=_("log tail"), blank=True)
    error = models.TextField(verbose_name=_("error"), blank=True)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("launched by"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="training_runs",
    )
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(verbose_name=_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        verbose_name=_("heartbeat at"), null=True, blank=True,
        help_text=_("Last sign of life from the worker; a silent running run is failed."),
    )
    in_service = models.BooleanField(
        verbose_name=_("in service"), default=False,
        help_text=_("The reward model that scores accepted replies; one run at a time."),
    )
    in_service_since = models.DateTimeField(verbose_name=_("in service since"), null=True, blank=True)
    parents = models.ManyToManyField(
        "self", verbose_name=_("parents"), through="TrainingRunParent", through_fields=("run", "parent"),
        symmetrical=False, related_name="children", blank=True,
        help_text=_("The runs that wrote the model folders this run started from."),
    )

    class Meta:
        verbose_name = _("training run")
        verbose_name_plural = _("training runs")
        ordering = ["-created_at"]
        permissions = [
            ("launch_run", "Can launch training runs from the admin"),
            ("promote_trainingrun", "Can put a reward-model run in service and take it out"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="training_run_progress_at_most_100"),
            models.UniqueConstraint(
                fields=["in_service"], condition=models.Q(in_service=True), name="training_run_one_in_service"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.status})"


class TrainingRunParent(models.Model):
    """A run started from a model folder that another (succeeded) run wrote, in one role."""

    class Role(models.TextChoices):
        POLICY = "policy", _("policy")
        REWARD_MODEL = "reward_model", _("reward model")
        BASE_MODEL = "base_model", _("base model")

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="parent_links")
    parent = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="child_links")
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        verbose_name = _("training run parent")
        verbose_name_plural = _("training run parents")
        ordering = ["role"]
        constraints = [
            models.UniqueConstraint(fields=["run", "role"], name="training_run_one_parent_per_role"),
            models.CheckConstraint(condition=~models.Q(run=models.F("parent")), name="training_run_not_its_own_parent"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} from run {self.parent_id} ({self.get_role_display()})"


class RewardModelEvaluation(models.Model):
    """A reward-model run scored on one data file by ``evaluate_reward_model``: the headline figures, and the
    whole evaluation (by rank gap, by language, intervals) in ``summary``."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="evaluations")
    data_file = models.CharField(max_length=1000)
    data_sha256 = models.CharField(max_length=64)
    pairs = models.PositiveIntegerField()
    accuracy = models.FloatField()
    accuracy_low = models.FloatField(help_text="95% interval, low end")
    accuracy_high = models.FloatField(help_text="95% interval, high end")
    length_rule = models.FloatField(help_text="accuracy of 'the longer reply wins' on the same pairs")
    random_low = models.FloatField(help_text="95% of fair coins score in [low, high] on as many pairs")
    random_high = models.FloatField()
    summary = models.JSONField(default=dict, blank=True)
    report_file = models.CharField(max_length=1000, blank=True, help_text="the JSON the command wrote")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("reward model evaluation")
        verbose_name_plural = _("reward model evaluations")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(accuracy__gte=0, accuracy__lte=1), name="reward_evaluation_accuracy_in_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"evaluation of run {self.run_id} on {self.data_file}"
