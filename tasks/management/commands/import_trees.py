"""manage.py import_trees IN: load oasst tree files, message files, Hugging Face flat rows and Hugging Face
release folders (export_trees --format hf); trees the database holds gain the messages they lack."""

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from tasks.importer import ImportLineError, import_file

SHOWN_CHANGES = 10  # changed fields listed without -v 2


class Command(BaseCommand):
    help = ("Import oasst trees (tree files, nested/flat message files, HF rows; gz or not; HF release folders). "
            "Trees that exist gain the messages they lack; differing fields of existing messages are reported. "
            "Idempotent.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="input file (.jsonl or .jsonl.gz), or a Hugging Face release folder")
        parser.add_argument("--backlog-ranking", action="store_true",
                            help="put the imported trees in backlog_ranking instead of their state in the file")
        parser.add_argument("--update-changed", action="store_true",
                            help="take the file's value of fields that differ on existing messages (default: report)")
        parser.add_argument("--report", metavar="FILE",
                            help="write one JSON line per tree: status, ids added, changed fields, error")
        parser.add_argument("--stop-on-error", action="store_true", help="stop at the first malformed line")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        verbose = options["verbosity"] >= 2
        try:
            report_file = open(options["report"], "w", encoding="utf-8") if options["report"] else None  # noqa: SIM115
        except OSError as error:
            raise CommandError(f"Cannot write the report: {error}") from error

        def on_tree(outcome):
            if report_file:
                report_file.write(json.dumps(outcome.as_json()) + "\n")
            if verbose and outcome.status != "identical":
                self.stdout.write(f"tree {outcome.tree_id}: {outcome.status}, {len(outcome.added)} messages added"
                                  + (f", {len(outcome.changes)} changed fields" if outcome.changes else "")
                                  + (f": {outcome.error}" if outcome.error else ""))

        try:
            with tqdm(unit="tree", disable=options["no_progress"], file=self.stderr._out) as bar:
                report = import_file(path=options["path"], backlog_ranking=options["backlog_ranking"],
                                     stop_on_error=options["stop_on_error"],
                                     update_changed=options["update_changed"], progress=bar.update, on_tree=on_tree)
        except ImportLineError as error:
            raise CommandError(f"Malformed input at {error}; nothing after it was imported.") from error
        except OSError as error:
            raise CommandError(str(error)) from error
        finally:
            if report_file:
                report_file.close()
        for error in report.errors:
            self.stderr.write(f"skipped malformed {error}")
        for tree_id, error in report.trees_refused.items():
            self.stderr.write(f"refused tree {tree_id}: {error}")
        if report.orphans:
            self.stderr.write(f"skipped {len(report.orphans)} orphan messages (parent missing): "
                              + ", ".join(report.orphans[:10]) + (" ..." if len(report.orphans) > 10 else ""))
        shown = report.changes if verbose else report.changes[:SHOWN_CHANGES]
        for change in shown:
            self.stderr.write(f"{'updated' if change.applied else 'differs'}: message {change.message_id} "
                              f"{change.field}: database {change.db!r}, file {change.file!r}")
        if len(shown) < len(report.changes):
            self.stderr.write(f"... {len(report.changes) - len(shown)} more changed fields (-v 2 or --report FILE)")
        summary = (f"Imported {report.trees_created} trees, {report.messages_created} messages, "
                   f"{report.users_created} placeholder users; ")
        if report.trees_merged:
            summary += f"added {report.messages_added} messages to {len(report.trees_merged)} existing trees; "
        summary += f"skipped {len(report.trees_skipped)} existing trees (nothing new); "
        if report.changes:
            changed_trees = len({change.tree_id for change in report.changes})
            summary += (f"{len(report.changes)} changed fields in {changed_trees} trees "
                        + ("updated from the file; " if options["update_changed"]
                           else "reported, not applied (--update-changed applies them); "))
        if report.trees_refused:
            summary += f"refused {len(report.trees_refused)} trees; "
        summary += f"{len(report.errors)} malformed lines."
        self.stdout.write(summary)
