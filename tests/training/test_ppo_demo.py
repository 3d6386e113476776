"""The demo path: a few PPO steps of SmolLM2-135M-Instruct against the MiniLM reward model of the shared trees."""

import json
import math

import pytest

from training.models import TrainingRun

from .tiny_models import run_ppo

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_smollm2_takes_ppo_steps_against_the_minilm_reward_model(
    smollm2_policy, minilm_reward_model, shared_trees, tmp_path
):
    policy, _ = smollm2_policy
    reward_model, _ = minilm_reward_model
    output = tmp_path / "ppo"
    stdout = run_ppo(
        output,
        reward_model,
        shared_trees,
        policy,
        steps=2,
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=2,
        lr=1e-5,
        max_new_tokens=16,
        eval_prompts=4,
        eval_every=2,
        checkpoint_every=10,
        prompt_kind="root",
        seed=0,
    )
    assert "step 2/2" in stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["data"]["eval_prompts"] == 4 and metrics["data"]["train_prompts"] >= 80
    assert metrics["parameters"] > 134_000_000
    assert metrics["steps"][0]["kl"] == pytest.approx(0.0, abs=1e-3)
    assert all(math.isfinite(row["reward_mean"]) and row["response_length"] > 0 for row in metrics["steps"])
    samples = json.loads((output / "samples.json").read_text())
    assert len(samples) == 4 and all(sample["before"]["reply"].strip() for sample in samples)
    assert (output / "model.safetensors").is_file() and (output / "ppo_curves.png").is_file()
    assert (output / "tokenizer_config.json").is_file()
    run = TrainingRun.objects.get(output_dir=str(output.resolve()))
    assert run.status == TrainingRun.Status.SUCCEEDED and run.metrics["reward_model"]["base_model"]
