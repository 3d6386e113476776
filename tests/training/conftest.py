"""Tiny models and a learnable synthetic export shared by the training tests (built once per session)."""

from pathlib import Path

import pytest

from .tiny_models import build_tiny_bert, build_tiny_gpt2, write_synthetic_export


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def synthetic_export(tmp_path_factory) -> Path:
    """60 trees whose best-ranked reply holds the marker word."""
    path = tmp_path_factory.mktemp("synthetic") / "export.jsonl"
    write_synthetic_export(path, trees=60, seed=1)
    return path


@pytest.fixture(scope="session")
def marker_reward_model(tiny_bert, synthetic_export, tmp_path_factory) -> Path:
    """A tiny reward model trained to prefer replies holding the marker word (held-out accuracy about 0.8)."""
    from training.reward import RewardTrainingConfig, train_reward_model

    output = tmp_path_factory.mktemp("marker-rm")
    train_reward_model(
        RewardTrainingConfig(
            data=str(synthetic_export),
            output=str(output),
            base_model=str(tiny_bert),
            epochs=8,
            lr=2e-3,
            batch_size=16,
            max_length=64,
            eval_fraction=0.25,
            seed=0,
        )
    )
    return output
