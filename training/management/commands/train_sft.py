"""manage.py train_sft: supervised fine-tuning of a policy on the demonstrations of export files, and its output
folder."""

from __future__ import annotations

from django.core.management.base import CommandError

from training.dependencies import check_training_dependencies
from training.management.commands import train_reward_model
from training.models import TrainingRun
from training.pairs import data_files
from training.policy import PolicyMissing, default_policy_path
from training.sft import SFTTrainingConfig, sft_inputs, train_sft


class Command(train_reward_model.Command):
    """Shares the progress bar and progress recording of train_reward_model."""

    help = "Supervised fine-tuning of a causal LM policy on the demonstrations of export files (never the database)."

    def add_arguments(self, parser):
        defaults = SFTTrainingConfig(data="", output="")
        train_reward_model.add_training_arguments(parser, defaults)
        parser.add_argument(
            "--policy", default=None, help="local causal LM folder (default: SmolLM2 from prepare_base_models)"
        )
        parser.add_argument(
            "--all-paths", action="store_true",
            help="learn every accepted reply, not only the best-ranked one at each assistant turn",
        )
        parser.add_argument(
            "--lora-rank", type=int, default=defaults.lora_rank,
            help="train a LoRA adapter of this rank, merged into the policy written (0: train all weights)",
        )
        parser.add_argument("--lora-alpha", type=int, default=defaults.lora_alpha)
        parser.add_argument(
            "--samples", type=int, default=defaults.samples, help="held-out prompts answered before and after"
        )
        parser.add_argument("--sample-tokens", type=int, default=defaults.sample_tokens, help="length of those replies")

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
        train_reward_model.raise_on_sigterm()
        if options.get("eval_data"):
            raise CommandError("train_sft measures the run on held-out trees of --data: --eval-data is not read")
        sources, _ = train_reward_model.checked_data_sources(options)
        train_reward_model.checked_layouts(sources)
        for file in data_files(sources):
            train_reward_model.checked_oasst_export(file)
        try:
            policy = options["policy"] or str(default_policy_path())
        except PolicyMissing as error:
            raise CommandError(str(error)) from error
        config = SFTTrainingConfig(
            data=sources[0],
            output=options["output"],
            extra_data=tuple(sources[1:]),
            policy=policy,
            all_paths=options["all_paths"],
            **{
                key: options[key]
                for key in ("epochs", "lr", "batch_size", "max_length", "eval_fraction", "seed", "lora_rank",
                            "lora_alpha", "samples", "sample_tokens")
            },
        )
        try:
            sft_inputs(config)  # every refusal before a run is recorded or a folder made
        except ValueError as error:
            raise CommandError(str(error)) from error
        metrics = self.train_recorded(TrainingRun.Kind.SFT, config, train_sft)
        self._summary(metrics)
        self.stdout.write(f"training run {self.run.pk} recorded")

    def _summary(self, metrics: dict) -> None:
        data, before, after = metrics["data"], metrics["held_out_loss"]["before"], metrics["held_out_loss"]["after"]
        rows = [("data", f"{path['path']} (sha256 {path['sha256'][:16]}...)") for path in data["files"]]
        rows += [
            ("train trees / examples", f"{data['train']['trees']} / {data['train']['examples_used']}"),
            ("held-out trees / examples", f"{data['eval']['trees']} / {data['eval']['examples_used']}"),
            ("held-out assistant-token loss", f"{before['loss']:.3f} -> {after['loss']:.3f}"),
            ("held-out perplexity", f"{before['perplexity']:.2f} -> {after['perplexity']:.2f}"),
            ("training time", f"{metrics['train_seconds']} s ({metrics['train_examples_per_second']} examples/s)"),
            ("code version", metrics["code_version"] or "unknown"),
            ("output", metrics["config"]["output"]),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")
        self.stdout.write(self.style.SUCCESS("SFT policy written"))
