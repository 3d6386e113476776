"""manage.py train_ppo: PPO of a policy against a reward model on an export's prompts; also under torchrun."""

from __future__ import annotations

import sys
from dataclasses import asdict, fields
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.data import PROMPT_KINDS, file_sha256
from training.dependencies import check_training_dependencies
from training.management.commands.train_reward_model import raise_on_sigterm
from training.models import TrainingRun
from training.outputs import code_version
from training.policy import PolicyMissing, default_policy_path
from training.ppo import PPOConfig, step_line, train_ppo
from training.processes import Processes, processes_start, processes_stop
from training.services import training_run_fail, training_run_progress, training_run_start, training_run_succeed

STEPS_AND_EVALUATIONS = ("steps", "evaluations")
OPTIONS = {  # option name -> PPOConfig field, for the knobs beyond the paths
    "steps": "steps",
    "batch_size": "batch_size",
    "mini_batch_size": "mini_batch_size",
    "ppo_epochs": "ppo_epochs",
    "lr": "lr",
    "kl_coef": "kl_coef",
    "target_kl": "target_kl",
    "temperature": "temperature",
    "top_p": "top_p",
    "max_new_tokens": "max_new_tokens",
    "max_prompt_length": "max_prompt_length",
    "prompt_kind": "prompt_kind",
    "eval_fraction": "eval_fraction",
    "eval_prompts": "eval_prompts",
    "eval_every": "eval_every",
    "checkpoint_every": "checkpoint_every",
    "lora_rank": "lora_rank",
    "seed": "seed",
}


class Command(BaseCommand):
    help = "PPO: fine-tune a policy against a reward model on the prompts of an export file (never the database)."

    def add_arguments(self, parser):
        defaults = {field.name: field.default for field in fields(PPOConfig) if field.name in OPTIONS.values()}
        parser.add_argument("--reward-model", required=True, help="folder written by train_reward_model")
        parser.add_argument("--prompts", required=True, help="export file whose prompter messages are the prompts")
        parser.add_argument("--output", required=True, help="folder for the policy, metrics, curves, samples, card")
        parser.add_argument(
            "--policy", default=None, help="local causal LM folder (default: SmolLM2 from prepare_base_models)"
        )
        parser.add_argument("--resume", action="store_true", help="go on from the latest checkpoint in --output")
        parser.add_argument("--fixed-kl", action="store_true", help="keep the KL coefficient fixed (not adaptive)")
        parser.add_argument("--prompt-kind", choices=PROMPT_KINDS, default=defaults["prompt_kind"])
        for option, field in OPTIONS.items():
            if option == "prompt_kind":
                continue
            kind = type(defaults[field])
            parser.add_argument(f"--{option.replace('_', '-')}", type=kind, default=defaults[field])

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
        raise_on_sigterm()
        prompts, reward_model = Path(options["prompts"]), Path(options["reward_model"])
        if not prompts.is_file():
            raise CommandError(f"no export file at {prompts}")
        if not (reward_model / "reward_model.json").is_file():
            raise CommandError(f"{reward_model} is not a reward model folder written by train_reward_model")
        try:
            policy = options["policy"] or str(default_policy_path())
        except PolicyMissing as error:
            raise CommandError(str(error)) from error
        config = PPOConfig(
            reward_model=str(reward_model),
            prompts=str(prompts),
            output=options["output"],
            policy=policy,
            adaptive_kl=not options["fixed_kl"],
            **{field: options[option] for option, field in OPTIONS.items()},
        )
        processes = processes_start()
        try:
            config.check(processes.world_size)
        except ValueError as error:
            processes_stop(processes)
            raise CommandError(str(error)) from error
        try:
            self._train(config, processes, resume=options["resume"])
        finally:
            processes_stop(processes)

    def _train(self, config: PPOConfig, processes: Processes, *, resume: bool) -> None:
        from tqdm import tqdm

        self.run = None
        if processes.main:
            self.run = training_run_start(
                kind=TrainingRun.Kind.PPO,
                parameters={
                    **{key: value for key, value in asdict(config).items() if key not in ("prompts", "output")},
                    "resume": resume,
                    "processes": processes.world_size,
                },
                data_file=str(Path(config.prompts).resolve()),
                data_sha256=file_sha256(config.prompts),
                output_dir=str(Path(config.output).resolve()),
            )
        self.bar = tqdm(
            total=config.steps, desc="PPO", unit="step", file=sys.stderr, disable=not processes.main, dynamic_ncols=True
        )

        def on_step(stats: dict) -> None:
            if self.bar.n == 0 and stats["step"] > 1:
                self.bar.update(stats["step"] - 1)  # resumed: the bar starts where the checkpoint was
            line = step_line(stats, config.steps)
            self.bar.update(1)
            tqdm.write(line, file=self.stdout)
            training_run_progress(run=self.run, progress=100 * stats["step"] // config.steps, log_line=line)

        try:
            metrics = train_ppo(config, resume=resume, on_step=on_step, processes=processes)
        except ValueError as error:
            if self.run is not None:
                training_run_fail(run=self.run, error=str(error))
            raise CommandError(str(error)) from error
        except BaseException as error:
            if self.run is not None:
                training_run_fail(run=self.run, error=f"{type(error).__name__}: {error}")
            raise
        finally:
            self.bar.close()
        if not processes.main:
            return
        training_run_succeed(
            run=self.run,
            metrics={key: value for key, value in metrics.items() if key not in STEPS_AND_EVALUATIONS},
            code_version=code_version(),
        )
        held_out = metrics["held_out_reward"]
        rows = [
            ("prompts", f"{metrics['data']['file']} ({metrics['data']['sha256'][:16]}...)"),
            ("train / held-out prompts", f"{metrics['data']['train_prompts']} / {metrics['data']['eval_prompts']}"),
            ("held-out reward before", f"{held_out['before']:.4f}"),
            ("held-out reward after", f"{held_out['after']:.4f}"),
            ("seconds per step", str(metrics["seconds_per_step"])),
            ("processes", str(metrics["processes"])),
            ("output", str(Path(config.output).resolve())),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")
        self.stdout.write(self.style.SUCCESS(f"PPO policy written; training run {self.run.pk} recorded"))
