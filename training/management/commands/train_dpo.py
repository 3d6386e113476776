"""manage.py train_dpo: DPO of a policy on the ranked replies of an export file, and its output folder."""

from __future__ import annotations

from django.core.management.base import CommandError

from training.dependencies import check_training_dependencies
from training.dpo import DPOTrainingConfig, number_or_na, train_dpo
from training.management.commands import train_reward_model
from training.models import TrainingRun
from training.policy import PolicyMissing, default_policy_path


class Command(train_reward_model.Command):
    """Shares the progress bar and progress recording of train_reward_model."""

    help = "DPO of a causal LM policy on the ranked replies of an export file (never the database)."

    def add_arguments(self, parser):
        defaults = DPOTrainingConfig(data="", output="")
        train_reward_model.add_training_arguments(parser, defaults)
        parser.add_argument(
            "--policy", default=None, help="local causal LM folder (default: SmolLM2 from prepare_base_models)"
        )
        parser.add_argument("--beta", type=float, default=defaults.beta, help="strength of the pull to the reference")

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
        train_reward_model.raise_on_sigterm()
        data = train_reward_model.checked_data_file(options, positive=("epochs", "lr", "beta"))
        try:
            policy = options["policy"] or str(default_policy_path())
        except PolicyMissing as error:
            raise CommandError(str(error)) from error
        train_reward_model.checked_oasst_export(data)
        config = DPOTrainingConfig(
            data=str(data),
            output=options["output"],
            policy=policy,
            **{key: options[key] for key in ("epochs", "lr", "beta", "batch_size", "max_length", "eval_fraction")},
            seed=options["seed"],
        )
        metrics = self.train_recorded(TrainingRun.Kind.DPO, config, train_dpo)
        self._summary(metrics)
        self.stdout.write(f"training run {self.run.pk} recorded")

    def _summary(self, metrics: dict) -> None:
        data, evaluation = metrics["data"], metrics["eval"]
        before, after = metrics["eval_before"], metrics["eval_after"]

        rows = [
            ("data", f"{data['file']} (sha256 {data['sha256'][:16]}...)"),
            ("train trees / pairs", f"{data['train']['trees']} / {data['train_pairs_used']}"),
            ("held-out trees / pairs", f"{data['eval']['trees']} / {data['eval_pairs_used']}"),
            ("held-out preference accuracy", number_or_na(evaluation["accuracy"])),
        ]
        rows += [
            (f"  rank gap {gap}", f"{number_or_na(row['accuracy'])} ({row['pairs']} pairs)")
            for gap, row in evaluation.get("by_rank_gap", {}).items()
        ]
        rows += [
            (
                "held-out DPO loss before / after",
                f"{number_or_na(before.get('loss'))} / {number_or_na(after.get('loss'))}",
            ),
            ("training time", f"{metrics['train_seconds']} s ({metrics['train_samples_per_second']} pairs/s)"),
            ("code version", metrics["code_version"] or "unknown"),
            ("output", metrics["config"]["output"]),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")
        self.stdout.write(self.style.SUCCESS("DPO policy written"))
