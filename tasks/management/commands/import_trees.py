"""manage.py import_trees IN: load oasst tree files, message files and Hugging Face flat rows."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from tasks.importer import ImportLineError, import_file


class Command(BaseCommand):
    help = "Import oasst trees (tree files, nested/flat message files, HF rows; gz or not), idempotently."

    def add_arguments(self, parser):
        parser.add_argument("path", help="input file (.jsonl or .jsonl.gz)")
        parser.add_argument("--backlog-ranking", action="store_true",
                            help="put the imported trees in backlog_ranking instead of their state in the file")
        parser.add_argument("--stop-on-error", action="store_true", help="stop at the first malformed line")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        try:
            with tqdm(unit="tree", disable=options["no_progress"], file=self.stderr._out) as bar:
                report = import_file(path=options["path"], backlog_ranking=options["backlog_ranking"],
                                     stop_on_error=options["stop_on_error"], progress=bar.update)
        except ImportLineError as error:
            raise CommandError(f"Malformed input at {error}; nothing after it was imported.") from error
        except OSError as error:
            raise CommandError(str(error)) from error
        for error in report.errors:
            self.stderr.write(f"skipped malformed {error}")
        if report.orphans:
            self.stderr.write(f"skipped {len(report.orphans)} orphan messages (parent missing): "
                              + ", ".join(report.orphans[:10]) + (" ..." if len(report.orphans) > 10 else ""))
        self.stdout.write(f"Imported {report.trees_created} trees, {report.messages_created} messages, "
                          f"{report.users_created} placeholder users; skipped {len(report.trees_skipped)} "
                          f"existing trees, {len(report.errors)} malformed lines.")
