"""What every training command shares in its output folder: figures drawn with matplotlib off-screen, the export
manifest found beside a data file, the model cards' manifest and hyperparameters section, the code version
(``git describe``) recorded in metrics.json, and the removal of an empty checkpoints folder."""

from __future__ import annotations

import json
import subprocess  # noqa: S404 - only `git describe` with fixed arguments
from pathlib import Path


def pyplot():
    """matplotlib's pyplot drawing off-screen (the Agg backend: commands and workers have no display)."""
    # heavy: matplotlib is only needed where a figure is drawn, never in the web process
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def export_manifest(data: str) -> dict | None:
    """The manifest an export may write beside its file (``<file>.manifest.json`` or ``manifest.json``)."""
    path = Path(data)
    for candidate in (path.with_name(path.name + ".manifest.json"), path.parent / "manifest.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError:
                return None
    return None


def manifest_and_hyperparameters_markdown(manifest: dict | None, config: dict) -> list[str]:
    """The model cards' shared middle: the export manifest when one lies beside the data file, then the
    hyperparameters table (every config field but the data and output paths)."""
    lines = []
    if manifest is not None:
        lines += ["", "Export manifest:", "", "```json", json.dumps(manifest, indent=2), "```"]
    lines += ["", "## Hyperparameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {key} | `{value}` |" for key, value in config.items() if key not in ("data", "output")]
    return lines


def code_version() -> str | None:
    try:
        result = subprocess.run(  # noqa: S603
            ["git", "describe", "--always", "--dirty", "--tags"],  # noqa: S607
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def remove_empty_checkpoints(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
