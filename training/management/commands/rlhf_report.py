"""manage.py rlhf_report: the held-out prompts of a PPO run answered greedily by several policies (the first is the
base), scored by the reward model (and a judge), compared in report.json, report.md and report.png."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.data import PROMPT_KINDS
from training.dependencies import check_training_dependencies
from training.management.commands.evaluate_reward_model import checked_reward_model_folder
from training.rlhf_report import RLHFReportConfig, rlhf_report, table_rows
from training.sft import check_policy_folder


class Command(BaseCommand):
    help = (
        "Compare policies (the first is the base) on the held-out prompts of an export: greedy replies scored by "
        "the reward model, mean reward and win rate against the base with 95% intervals, reply length, KL to the "
        "base, and a judge's view with --judge."
    )

    def add_arguments(self, parser):
        defaults = RLHFReportConfig(policies=(), reward_model="", prompts="", output="")
        parser.add_argument(
            "--policy", action="append", default=[], help="causal LM folder; repeat it: the first is the base"
        )
        parser.add_argument("--label", action="append", default=[], help="a policy's name (one per --policy)")
        parser.add_argument("--reward-model", required=True, help="folder written by train_reward_model")
        parser.add_argument("--judge", default=None, help="a second reward-model folder that judges the replies too")
        parser.add_argument("--prompts", required=True, help="export file (held-out trees as train_ppo splits them)")
        parser.add_argument("--output", required=True, help="folder for report.json, report.md and report.png")
        parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
        parser.add_argument("--max-prompt-length", type=int, default=defaults.max_prompt_length)
        parser.add_argument("--prompt-kind", choices=PROMPT_KINDS, default=defaults.prompt_kind)
        parser.add_argument("--eval-fraction", type=float, default=defaults.eval_fraction, help="as train_ppo's")
        parser.add_argument("--seed", type=int, default=defaults.seed, help="as train_ppo's")
        parser.add_argument(
            "--prompts-limit", type=int, default=None, help="the first N held-out prompts (default: all)"
        )
        parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="prompts answered at once")
        parser.add_argument(
            "--samples", type=int, default=defaults.samples, help="prompts shown side by side in report.md"
        )

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
        from tqdm import tqdm

        config = RLHFReportConfig(
            policies=tuple(options["policy"]),
            labels=tuple(options["label"]),
            reward_model=options["reward_model"],
            judge=options["judge"],
            prompts=options["prompts"],
            output=options["output"],
            **{
                key: options[key]
                for key in ("max_new_tokens", "max_prompt_length", "prompt_kind", "eval_fraction", "seed",
                            "prompts_limit", "batch_size", "samples")
            },
        )
        self._check(config)
        bar = tqdm(desc="greedy replies", unit="reply", file=sys.stderr, dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = rlhf_report(config, progress=progress)
        except ValueError as error:
            raise CommandError(str(error)) from error
        finally:
            bar.close()
        rows = table_rows(report)
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        self.stdout.write(
            f"{report['prompts']['held_out']} held-out prompts of {report['prompts']['trees']} trees; "
            f"{report['seconds']} s"
        )
        self.stdout.write(self.style.SUCCESS(f"report written to {Path(config.output).resolve()}"))

    def _check(self, config: RLHFReportConfig) -> None:
        """Every refusal that needs no model loaded, before anything is written."""
        try:
            config.check()
            for folder in config.policies:
                check_policy_folder(folder)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if not Path(config.prompts).is_file():
            raise CommandError(f"no export file at {config.prompts}")
        for folder in filter(None, (config.reward_model, config.judge)):
            checked_reward_model_folder(Path(folder))
