"""manage.py evaluate_reward_model: score every preference pair of some files with a trained reward model and
report its accuracy with a 95% interval beside the length rule and a coin on the same pairs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from training.data import PreferencePair
from training.dependencies import check_training_dependencies
from training.evaluation import evaluate_preference_pairs
from training.models import TrainingRun
from training.outputs import code_version
from training.pairs import data_files, evaluation_pairs
from training.reward import load_reward_model, score_pairs
from training.reward_report import evaluation_lines, plot_accuracy
from training.services import training_run_add_evaluation

CHUNK_PAIRS = 256  # pairs scored between two progress updates


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def checked_reward_model_folder(folder: Path) -> None:
    """Refuses anything but a folder written by train_reward_model: a sequence classifier with one output and
    the reward_model.json that says how its inputs were laid out."""
    from transformers import AutoConfig

    if not folder.is_dir():
        raise CommandError(f"no model folder at {folder}")
    if not (folder / "config.json").is_file():
        raise CommandError(f"{folder} is not a reward model: it holds no config.json")
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise CommandError(f"{folder} is not a reward model: its config.json cannot be read ({error})") from error
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        named = ", ".join(architectures) or "no architecture"
        raise CommandError(f"{folder} is not a reward model: its config names {named}, not a sequence classifier")
    if config.num_labels != 1:
        raise CommandError(
            f"{folder} is not a reward model: a sequence classifier with {config.num_labels} labels (a reward model "
            "has one output)"
        )
    if not (folder / "reward_model.json").is_file():
        raise CommandError(
            f"{folder} has no reward_model.json: only folders written by train_reward_model can be scored "
            "(that file records the input layout and the maximum length)"
        )


def report_stem(path: Path) -> str:
    """``helpful-base.jsonl.gz`` -> ``helpful-base``: the name of the file's JSON and plot."""
    name = path.name.removesuffix(".gz")
    return Path(name).stem


def training_checksums(folder: Path) -> set[str]:
    """The sha256 of every file the model trained on, from its metrics.json (empty when there is none)."""
    path = folder / "metrics.json"
    if not path.is_file():
        return set()
    data = json.loads(path.read_text()).get("data") or {}
    files = [row.get("sha256") for row in data.get("files") or [] if row.get("role", "train") == "train"]
    return {checksum for checksum in [data.get("sha256"), *files] if checksum}


def recorded_run(folder: Path) -> TrainingRun | None:
    """The reward-model run whose output folder this is, if one was recorded."""
    return (
        TrainingRun.objects.filter(kind=TrainingRun.Kind.REWARD_MODEL, output_dir=str(folder.resolve()))
        .order_by("-created_at")
        .first()
    )


class Command(BaseCommand):
    help = (
        "Score every preference pair of the given files (oasst exports or TRL preference-pair files) with a reward "
        "model: accuracy with a 95% interval, by rank gap and by language, beside the length rule and a coin."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="output folder of train_reward_model")
        parser.add_argument(
            "--data", required=True, action="extend", nargs="+",
            help="export or preference-pair file, or a folder of them; may be given several times",
        )
        parser.add_argument("--out", default=None, help="folder for the JSON and plots (default: MODEL/evaluations)")
        parser.add_argument("--batch-size", type=_positive_int, default=32, help="replies scored at once")

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
        folder = Path(options["model"])
        checked_reward_model_folder(folder)
        sources = [options["data"]] if isinstance(options["data"], str) else options["data"]
        for source in sources:
            if not Path(source).exists():
                raise CommandError(f"no data file or folder at {source}")
        files = self._files_with_pairs(sources)
        out = Path(options["out"]) if options["out"] else folder / "evaluations"

        model, tokenizer, reading = load_reward_model(folder)
        model.to(_device())
        run = recorded_run(folder)
        trained_on = training_checksums(folder)
        for path, (pairs, row) in files.items():
            report = self._evaluate(path, pairs, row, model, tokenizer, reading, options["batch_size"], folder)
            report["json"]["model_trained_on_this_file"] = row["sha256"] in trained_on
            out.mkdir(parents=True, exist_ok=True)
            stem = report_stem(path)
            report_path = out / f"{stem}.json"
            report_path.write_text(json.dumps(report["json"], indent=2))
            plot_accuracy(report["json"]["evaluation"], *report["scores"], out / f"{stem}.png", title=path.name)
            self._print(report["json"], report_path)
            if run is not None:
                try:
                    training_run_add_evaluation(
                        run=run, data_file=str(path.resolve()), data_sha256=row["sha256"],
                        evaluation=report["json"]["evaluation"], report_file=str(report_path.resolve()),
                    )
                except ValidationError as error:
                    raise CommandError(" ".join(error.messages)) from error
                self.stdout.write(f"recorded on training run {run.pk}")

    def _files_with_pairs(self, sources: list[str]) -> dict[Path, tuple[list[PreferencePair], dict]]:
        """Every file behind the sources with its pairs, read before anything is scored or written: a file
        without pairs, of an unknown layout or sharing its report name with another is refused."""
        try:
            paths = data_files(sources)
        except ValueError as error:
            raise CommandError(str(error)) from error
        stems: dict[str, Path] = {}
        files = {}
        for path in paths:
            stem = report_stem(path)
            if stem in stems:
                raise CommandError(f"{stems[stem]} and {path} would both be reported as {stem}.json: rename one")
            stems[stem] = path
            try:
                pairs, rows = evaluation_pairs([path])
            except ValueError as error:
                raise CommandError(str(error)) from error
            if not pairs:
                raise CommandError(f"{path} holds no preference pairs to evaluate (no ranked replies, no pairs)")
            files[path] = (pairs, rows[0])
        return files

    def _evaluate(self, path, pairs, row, model, tokenizer, reading, batch_size, folder) -> dict:
        from tqdm import tqdm

        started = time.monotonic()
        self.stdout.write(f"scoring {len(pairs)} pairs of {path} ...")
        chosen: list[float] = []
        rejected: list[float] = []
        with tqdm(total=len(pairs), unit="pair", disable=None) as bar:  # no bar when not on a terminal
            for start in range(0, len(pairs), CHUNK_PAIRS):
                chunk = pairs[start : start + CHUNK_PAIRS]
                better, worse = score_pairs(model, tokenizer, chunk, reading=reading, batch_size=batch_size)
                chosen += better
                rejected += worse
                bar.update(len(chunk))
        seconds = time.monotonic() - started
        evaluation = evaluate_preference_pairs(pairs, chosen, rejected)
        report = {
            "model": str(folder.resolve()),
            "file": str(path.resolve()),
            "sha256": row["sha256"],
            "layout": row["layout"],
            "max_length": reading.max_length,
            "input_layout": reading.layout,
            "scoring_seconds": round(seconds, 2),
            "replies_per_second": round(2 * len(pairs) / seconds, 1) if seconds > 0 else None,
            "code_version": code_version(),
            "evaluated_at": timezone.now().isoformat(),
            "evaluation": evaluation,
            "rewards": {"chosen": chosen, "rejected": rejected},
        }
        return {"json": report, "scores": (chosen, rejected)}

    def _print(self, report: dict, report_path: Path) -> None:
        rows = [
            ("file", report["file"]),
            ("sha256", report["sha256"][:16] + "..."),
            ("layout", report["layout"]),
            *evaluation_lines(report["evaluation"]),
            ("scoring", f"{report['scoring_seconds']} s ({report['replies_per_second']} replies/s)"),
            ("written", f"{report_path} and {report_path.with_suffix('.png').name}"),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")
        if report["model_trained_on_this_file"]:
            self.stdout.write(self.style.WARNING(
                "warning: the model trained on this file (same sha256): its training pairs are among these, so the "
                "figures above overstate how it does on unseen rankings"
            ))


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
