"""manage.py export_trees OUT: stream trees or messages in the oasst format, or write the Hugging Face
release folder (--format hf), with a manifest; ids are anonymised unless --no-anonymize."""

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from tasks.export import FORMATS, ExportFilters, export_to_file, release_seed
from tasks.export_hf import DEFAULT_SPLIT_SEED, DEFAULT_VALIDATION_FRACTION, HF_FORMAT, export_hf
from tasks.models import TreeState


def _moment(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"Not a date or time: {value!r} (use ISO 8601, e.g. 2026-01-31).")
        moment = datetime(day.year, day.month, day.day)
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = ("Export conversation trees (or flat messages) as oasst JSON Lines (.gz compresses), or as a Hugging "
            "Face release folder of Parquet files (--format hf).")

    def add_arguments(self, parser):
        parser.add_argument("out", help="output file (.jsonl or .jsonl.gz); a folder for --format hf")
        parser.add_argument("--format", choices=(*FORMATS, HF_FORMAT), default="trees")
        parser.add_argument("--state", action="append", choices=TreeState.values,
                            help="tree state(s) to export (repeatable; default ready_for_export)")
        parser.add_argument("--lang", action="append", help="language(s) to export (repeatable)")
        parser.add_argument("--since", help="trees created at or after (ISO 8601)")
        parser.add_argument("--until", help="trees created before (ISO 8601)")
        parser.add_argument("--user", type=int, help="only trees (or messages) written by this user id")
        parser.add_argument("--include-deleted", action="store_true")
        parser.add_argument("--include-spam", action="store_true")
        parser.add_argument("--include-synthetic", action="store_true")
        parser.add_argument("--labels", action="store_true", help="include the aggregated review labels")
        parser.add_argument("--events", action="store_true",
                            help="include events: emoji reactions and rankings, on the message concerned")
        anonymity = parser.add_mutually_exclusive_group()
        anonymity.add_argument("--anonymize", metavar="SEED",
                               help="the seed of the id hashes (default: OASST_EXPORT_ANONYMIZE_SEED, else random)")
        anonymity.add_argument("--no-anonymize", action="store_true",
                               help="keep the real ids (an internal export; never publish it)")
        hf = parser.add_argument_group("--format hf")
        hf.add_argument("--split-seed", type=int, default=DEFAULT_SPLIT_SEED,
                        help=f"seed of the train/validation split by tree (default {DEFAULT_SPLIT_SEED})")
        hf.add_argument("--validation-fraction", type=float, default=DEFAULT_VALIDATION_FRACTION,
                        help=f"share of the trees in the validation split (default {DEFAULT_VALIDATION_FRACTION})")
        hf.add_argument("--force", action="store_true", help="replace the output folder when it is not empty")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        filters = ExportFilters(
            states=tuple(options["state"] or (TreeState.READY_FOR_EXPORT,)),
            langs=tuple(options["lang"] or ()),
            since=_moment(options["since"]) if options["since"] else None,
            until=_moment(options["until"]) if options["until"] else None,
            user_id=options["user"],
            include_deleted=options["include_deleted"],
            include_spam=options["include_spam"],
            include_synthetic=options["include_synthetic"],
            labels=options["labels"],
            events=options["events"],
        )
        # Ids are anonymised unless asked not to: an export file is a release that may be published.
        seed, seed_source = (None, "") if options["no_anonymize"] else release_seed(options["anonymize"])
        if options["format"] == HF_FORMAT:
            self._export_hf(options, filters=filters, seed=seed, seed_source=seed_source)
            return
        with tqdm(unit="msg", disable=options["no_progress"], file=self.stderr._out) as bar:
            result = export_to_file(path=options["out"], filters=filters, fmt=options["format"],
                                    anonymize_seed=seed, seed_source=seed_source, progress=bar.update)
        self.stdout.write(f"Exported {result.trees} trees, {result.messages} messages to {result.path} "
                          f"(manifest {result.manifest_path}).")

    def _export_hf(self, options, *, filters: ExportFilters, seed: str | None, seed_source: str) -> None:
        try:
            with tqdm(unit="msg", disable=options["no_progress"], file=self.stderr._out) as bar:
                result = export_hf(out_dir=options["out"], filters=filters, anonymize_seed=seed,
                                   seed_source=seed_source, split_seed=options["split_seed"],
                                   validation_fraction=options["validation_fraction"], force=options["force"],
                                   progress=bar.update)
        except ValueError as error:
            raise CommandError(str(error)) from error
        splits = ", ".join(f"{split} {counts.trees} trees / {counts.messages} messages"
                           for split, counts in result.splits.items())
        self.stdout.write(f"Exported {result.trees} trees, {result.messages} messages to {result.path} ({splits}; "
                          f"manifest {result.manifest_path}).")
