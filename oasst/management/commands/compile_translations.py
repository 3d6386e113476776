"""Compiles the interface catalogues (every .po under LOCALE_PATHS) into the .mo files Django reads.
With GNU gettext's msgfmt on PATH this is Django's compilemessages (msgfmt --check-format); without it,
polib writes the .mo after the same placeholder checks (oasst.translations), so a bare machine works.
Exits non-zero on a broken catalogue. The .mo files are build outputs, not committed."""

import shutil
import subprocess
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from oasst.translations import catalogues, compile_with_polib


class Command(BaseCommand):
    help = "Compile locale/*/LC_MESSAGES/*.po to .mo (msgfmt when installed, else polib)."

    def add_arguments(self, parser):
        parser.add_argument("--use-polib", action="store_true",
                            help="Compile with polib even when msgfmt is installed.")

    def handle(self, *args, use_polib: bool = False, **options):
        paths = catalogues()
        if not paths:
            raise CommandError("No catalogues (.po files) under LOCALE_PATHS.")
        if shutil.which("msgfmt") and not use_polib:
            try:
                # ignore_patterns "*": LOCALE_PATHS only, without walking the tree (.venv has its own locales)
                call_command("compilemessages", ignore_patterns=["*"], verbosity=options["verbosity"],
                             stdout=self.stdout, stderr=self.stderr)
            except CommandError:
                broken = self.remove_broken_mo_files(paths)
                raise CommandError(f"{len(broken)} of {len(paths)} catalogues are broken (msgfmt's messages above); "
                                   f"no .mo kept for {', '.join(map(str, broken))}.") from None
            self.stdout.write(f"Compiled {len(paths)} catalogues with msgfmt.")
            return
        failed = []
        for path in paths:
            try:
                mo_path = compile_with_polib(path)
            except ValueError as error:
                failed.append(path)
                self.stderr.write(f"{path}: {error}")
            else:
                self.stdout.write(f"{path} -> {mo_path.name}")
        if failed:
            raise CommandError(f"{len(failed)} of {len(paths)} catalogues are broken; no .mo written for them.")
        self.stdout.write(f"Compiled {len(paths)} catalogues with polib.")

    @staticmethod
    def remove_broken_mo_files(paths: list[Path]) -> list[Path]:
        """msgfmt writes a .mo even when its checks fail: Django would load it, bad format strings and all."""
        msgfmt = shutil.which("msgfmt")
        broken = [path for path in paths if subprocess.run(  # noqa: S603 (our own catalogues' paths)
            [msgfmt, "--check-format", "-o", "/dev/null", str(path)], capture_output=True).returncode != 0]
        for path in broken:
            path.with_suffix(".mo").unlink(missing_ok=True)
        return broken
