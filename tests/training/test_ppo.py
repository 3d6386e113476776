"""PPO: its math on hand-made tensors, and `manage.py train_ppo` end to end on a tiny GPT-2 and a tiny reward model."""

import json
import math
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from training.models import TrainingRun
from training.ppo_config import PPOConfig
from training.ppo_math import (
    AdaptiveKLController,
    RunningMoments,
    clipped_policy_loss,
    clipped_value_loss,
    gae_advantages,
    kl_penalised_rewards,
    masked_mean,
    masked_whiten,
)
from training.ppo_trainer import PPOTrainer

from .tiny_models import MARKER, TINY_PPO, run_ppo

# The module fixture records a run: every test declares the database so that it is set up even when run alone.
pytestmark = pytest.mark.django_db

# --- the math --------------------------------------------------------------------------------------------------------


def test_gae_matches_the_recursion_computed_by_hand_and_ignores_padding():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 9.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding: its reward and value must not count
    gamma, lam = 0.9, 0.8
    delta2 = 1.0 + gamma * 0.0 - 0.4
    delta1 = 0.0 + gamma * 0.4 - 0.2
    delta0 = 0.0 + gamma * 0.2 - 0.5
    a2 = delta2
    a1 = delta1 + gamma * lam * a2
    a0 = delta0 + gamma * lam * a1
    advantages, returns = gae_advantages(rewards, values, mask, gamma=gamma, lam=lam)
    assert advantages.tolist()[0] == pytest.approx([a0, a1, a2, 0.0])
    assert returns.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.4, 0.0])


def test_gae_with_lambda_one_and_zero_values_is_the_discounted_return():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    advantages, _ = gae_advantages(rewards, torch.zeros(1, 3), torch.ones(1, 3), gamma=0.5, lam=1.0)
    assert advantages.tolist()[0] == pytest.approx([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])


def test_the_kl_penalty_lands_on_every_token_and_the_score_on_the_last_reply_token():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    rewards, kl = kl_penalised_rewards(torch.tensor([2.0, -1.0]), logprobs, ref_logprobs, mask, 0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.1, 2.0], [-0.1 - 1.0, 0.0, 0.0]]))


def test_the_clipped_surrogate_stops_pushing_past_the_clip_range():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.5]]))  # ratios 1.5, 0.5, 1.1, 0.5
    advantages = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
    loss, clip_fraction, approx_kl = clipped_policy_loss(new, old, advantages, torch.ones(1, 4), cliprange=0.2)
    # A > 0: min(1.5, 1.2) = 1.2 is used; min(0.5, 0.8) = 0.5 (the pessimistic bound); 1.1 inside the range
    # A < 0: max(-0.5, -0.8) -> loss 0.8 (clipped)
    assert loss.item() == pytest.approx((-1.2 - 0.5 - 1.1 + 0.8) / 4)
    assert clip_fraction.item() == pytest.approx(2 / 4)
    assert approx_kl.item() == pytest.approx(0.5 * sum(math.log(r) ** 2 for r in (1.5, 0.5, 1.1, 0.5)) / 4)


def test_the_clipped_surrogate_gradient_vanishes_outside_the_range():
    new = torch.log(torch.tensor([[1.5]])).requires_grad_()
    loss, _, _ = clipped_policy_loss(new, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), cliprange=0.2)
    loss.backward()
    assert new.grad.item() == 0.0


def test_the_value_loss_takes_the_larger_of_the_clipped_and_unclipped_errors():
    values = torch.tensor([[2.0, 0.1]])
    old_values = torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0]])
    loss, clip_fraction = clipped_value_loss(values, old_values, returns, torch.ones(1, 2), cliprange_value=0.5)
    # first: unclipped error 0, clipped value 0.5 -> error 2.25; second: both inside: 0.81
    assert loss.item() == pytest.approx(0.5 * (2.25 + 0.81) / 2)
    assert clip_fraction.item() == pytest.approx(0.5)


def test_masked_whitening_gives_zero_mean_unit_variance_on_the_mask_only():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    whitened = masked_whiten(values, mask)
    assert masked_mean(whitened, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_mean(whitened**2, mask).item() == pytest.approx(1.0, abs=1e-4)
    assert whitened[0, 3].item() == 0.0


def test_the_adaptive_kl_controller_raises_beta_above_target_and_caps_the_error_at_twenty_percent():
    controller = AdaptiveKLController(0.1, target=6.0, horizon=100)
    controller.update(current_kl=60.0, n_steps=10)
    assert controller.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    controller = AdaptiveKLController(0.1, target=6.0, horizon=100)
    controller.update(current_kl=5.4, n_steps=10)
    assert controller.value == pytest.approx(0.1 * (1 - 0.1 * 10 / 100))


def test_running_moments_of_batches_equal_the_moments_of_all_scores():
    batches = [[0.5, -1.0, 2.0], [3.0], [-0.25, 0.75, 1.5, 0.0]]
    moments = RunningMoments()
    for batch in batches:
        moments.update(batch)
    every = torch.tensor([value for batch in batches for value in batch], dtype=torch.float64)
    assert moments.mean == pytest.approx(every.mean().item(), abs=1e-3)
    assert moments.std == pytest.approx(every.std(unbiased=False).item(), abs=1e-3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 6, "mini_batch_size": 4}, "multiple of mini_batch_size"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"eval_fraction": 0.0}, "eval_fraction"),
        ({"top_p": 1.5}, "top_p"),
        ({"prompt_kind": "leaves"}, "prompt_kind"),
    ],
)
def test_bad_settings_are_refused_before_anything_loads(change, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(reward_model="rm", prompts="p", output="o", **change).check()


def test_batch_sizes_must_split_evenly_over_the_processes():
    with pytest.raises(ValueError, match="3 processes"):
        PPOConfig(reward_model="rm", prompts="p", output="o", batch_size=8, mini_batch_size=4).check(world_size=3)


# --- end to end --------------------------------------------------------------------------------------------------


def test_ppo_writes_policy_metrics_curves_samples_and_card(ppo_run):
    output, stdout, _ = ppo_run
    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "ppo_curves.png"):
        assert (output / name).is_file(), name
    for name in ("samples.json", "samples.md", "README.md"):
        assert (output / name).is_file(), name
    assert not (output / "pytorch_model.bin").exists()
    assert (output / "checkpoints" / "step-000005" / "state.json").is_file()
    assert "step 20/20  reward" in stdout and "kl" in stdout and "clip" in stdout and "entropy" in stdout
    assert "held-out reward after" in stdout
    card = (output / "README.md").read_text()
    assert "sha256" in card and "code version" in card and "Reward model" in card


def test_held_out_reward_rises_and_the_policy_learns_the_preferred_word(ppo_run):
    output, _, _ = ppo_run
    metrics = json.loads((output / "metrics.json").read_text())
    held_out = metrics["held_out_reward"]
    assert held_out["after"] > held_out["before"]
    steps = metrics["steps"]
    assert len(steps) == 20 and steps[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the policy starts at the reference
    first, last = steps[:5], steps[-5:]
    assert sum(row["reward_mean"] for row in last) > sum(row["reward_mean"] for row in first)
    samples = json.loads((output / "samples.json").read_text())
    before = sum(MARKER in sample["before"]["reply"] for sample in samples)
    after = sum(MARKER in sample["after"]["reply"] for sample in samples)
    assert after > before
    assert metrics["data"]["eval_prompts"] == len(samples) > 0
    assert [row["step"] for row in metrics["evaluations"]] == [0, 5, 10, 15, 20]


def test_metrics_record_provenance_of_prompts_reward_model_and_code(ppo_run, synthetic_export, marker_reward_model):
    output, _, run = ppo_run
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["data"]["file"] == str(synthetic_export.resolve())
    assert len(metrics["data"]["sha256"]) == 64
    assert metrics["reward_model"]["folder"] == str(marker_reward_model.resolve())
    assert metrics["reward_model"]["held_out_accuracy"] > 0.5
    assert metrics["config"]["lr"] == TINY_PPO["lr"] and metrics["processes"] == 1
    assert run.status == TrainingRun.Status.SUCCEEDED and run.progress == 100
    assert run.data_sha256 == metrics["data"]["sha256"]
    assert run.metrics["held_out_reward"] == metrics["held_out_reward"]
    assert "steps" not in run.metrics
    assert "step 20/20" in run.log_tail


def test_the_saved_policy_reloads_and_answers(ppo_run, marker_reward_model, synthetic_export, tmp_path):
    output, _, _ = ppo_run
    config = PPOConfig(
        reward_model=str(marker_reward_model),
        prompts=str(synthetic_export),
        output=str(tmp_path),
        policy=str(output),
        batch_size=TINY_PPO["batch_size"],  # the same evaluation batches, so the same padding
        mini_batch_size=TINY_PPO["mini_batch_size"],
        max_new_tokens=TINY_PPO["max_new_tokens"],  # replies as long as the run's
        seed=TINY_PPO["seed"],
    )
    trainer = PPOTrainer(config)
    evaluation = trainer.evaluate()
    metrics = json.loads((output / "metrics.json").read_text())
    after = [sample["after"] for sample in json.loads((output / "samples.json").read_text())]
    # The same weights and batches give the run's greedy replies again. CPU kernels may sum in another order
    # (a run is not bit-reproducible on two threads), so a near-tie may pick another word once, and a reward
    # moves in its fourth decimal; an unsaved or untrained policy would answer otherwise on every prompt.
    same = [text == sample["reply"] for text, sample in zip(evaluation["texts"], after, strict=True)]
    assert sum(same) >= len(same) - 1
    for equal, reward, sample in zip(same, evaluation["rewards"], after, strict=True):
        assert not equal or reward == pytest.approx(sample["reward"], abs=1e-3)
    assert evaluation["reward_mean"] == pytest.approx(metrics["held_out_reward"]["after"], abs=0.05)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_result(
    ppo_run, marker_reward_model, synthetic_export, tiny_gpt2, tmp_path, monkeypatch
):
    uninterrupted = json.loads((ppo_run[0] / "metrics.json").read_text())
    original_step = PPOTrainer.ppo_step

    def dies_at_step_8(trainer):
        if trainer.step == 7:
            raise KeyboardInterrupt
        return original_step(trainer)

    monkeypatch.setattr(PPOTrainer, "ppo_step", dies_at_step_8)
    output = tmp_path / "policy"
    with pytest.raises(KeyboardInterrupt):
        run_ppo(output, marker_reward_model, synthetic_export, tiny_gpt2)
    killed = TrainingRun.objects.get(output_dir=str(output))
    assert killed.status == TrainingRun.Status.FAILED and "KeyboardInterrupt" in killed.error
    assert (output / "checkpoints" / "step-000005").is_dir()
    assert not (output / "metrics.json").exists()

    monkeypatch.setattr(PPOTrainer, "ppo_step", original_step)
    stdout = run_ppo(output, marker_reward_model, synthetic_export, tiny_gpt2, resume=True)
    assert "step 6/20" in stdout and "step 5/20" not in stdout
    resumed = json.loads((output / "metrics.json").read_text())
    assert [row["step"] for row in resumed["steps"]] == list(range(1, 21))
    for mine, theirs in zip(resumed["steps"], uninterrupted["steps"], strict=True):
        assert mine["reward_mean"] == pytest.approx(theirs["reward_mean"], abs=1e-4)
        assert mine["kl"] == pytest.approx(theirs["kl"], abs=1e-4)
    assert resumed["held_out_reward"] == pytest.approx(uninterrupted["held_out_reward"], abs=1e-4)
    assert TrainingRun.objects.filter(output_dir=str(output), status=TrainingRun.Status.SUCCEEDED).count() == 1


def test_resume_with_changed_settings_is_refused(ppo_run, marker_reward_model, synthetic_export, tiny_gpt2):
    output, _, _ = ppo_run
    with pytest.raises(CommandError, match="other settings: lr"):
        run_ppo(output, marker_reward_model, synthetic_export, tiny_gpt2, resume=True, lr=5e-4, steps=25)


def test_resume_without_a_checkpoint_is_refused_and_the_run_ends_failed(
    marker_reward_model, synthetic_export, tiny_gpt2, tmp_path
):
    with pytest.raises(CommandError, match="nothing to resume"):
        run_ppo(tmp_path / "new", marker_reward_model, synthetic_export, tiny_gpt2, resume=True)
    run = TrainingRun.objects.get(output_dir=str(tmp_path / "new"))
    assert run.status == TrainingRun.Status.FAILED and "nothing to resume" in run.error


def test_missing_inputs_are_refused_before_a_run_is_recorded(
    marker_reward_model, synthetic_export, tiny_gpt2, tmp_path
):
    with pytest.raises(CommandError, match="no export file"):
        run_ppo(tmp_path / "o", marker_reward_model, tmp_path / "missing.jsonl", tiny_gpt2)
    with pytest.raises(CommandError, match="not a reward model folder"):
        run_ppo(tmp_path / "o", tmp_path, synthetic_export, tiny_gpt2)
    with pytest.raises(CommandError, match="multiple of mini_batch_size"):
        run_ppo(tmp_path / "o", marker_reward_model, synthetic_export, tiny_gpt2, batch_size=6, mini_batch_size=4)
    assert not TrainingRun.objects.filter(output_dir=str(tmp_path / "o")).exists()


def test_without_a_prepared_policy_the_command_says_to_run_prepare_base_models(
    marker_reward_model, synthetic_export, tmp_path, settings
):
    settings.MODELS_DIR = str(tmp_path / "empty")
    with pytest.raises(CommandError, match="prepare_base_models"):
        call_command(
            "train_ppo", reward_model=str(marker_reward_model), prompts=str(synthetic_export), output=str(tmp_path)
        )


def test_prompts_from_a_single_tree_are_refused_and_the_run_ends_failed(marker_reward_model, tiny_gpt2, tmp_path):
    prompts = tmp_path / "one.jsonl"
    tree = {"message_tree_id": "t", "prompt": {"message_id": "t", "role": "prompter", "text": "the cat", "lang": "en"}}
    prompts.write_text(json.dumps(tree) + "\n")
    with pytest.raises(CommandError, match="at least two trees"):
        run_ppo(tmp_path / "o", marker_reward_model, prompts, tiny_gpt2)
    assert TrainingRun.objects.get(output_dir=str(tmp_path / "o")).status == TrainingRun.Status.FAILED


def test_lora_trains_only_the_adapter_and_saves_a_merged_model(
    marker_reward_model, synthetic_export, tiny_gpt2, tmp_path
):
    output = tmp_path / "lora"
    run_ppo(output, marker_reward_model, synthetic_export, tiny_gpt2, steps=3, lora_rank=4, eval_every=3)
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 < metrics["trainable_parameters"] < metrics["parameters"] / 5
    assert (output / "model.safetensors").is_file() and not (output / "adapter_config.json").exists()
    assert metrics["config"]["lora_rank"] == 4


# --- launched from the admin, run by the training job ------------------------------------------------------------


def test_the_admin_launches_a_ppo_run_that_the_job_trains(
    client, settings, tmp_path, marker_reward_model, synthetic_export, tiny_gpt2, django_capture_on_commit_callbacks
):
    from tests.factories import AdminFactory

    settings.EXPORT_DIR = str(tmp_path)
    (tmp_path / "oasst-trees.jsonl").write_bytes(synthetic_export.read_bytes())
    reward_run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED, data_file="x",
        output_dir=str(marker_reward_model),
    )
    admin = AdminFactory()
    client.force_login(admin)
    page = client.get("/admin/training/trainingrun/add/?kind=ppo")
    assert page.status_code == 200 and f"run {reward_run.pk}: {marker_reward_model}" in page.content.decode()
    form = {
        "data_file": "oasst-trees.jsonl", "reward_model": str(marker_reward_model), "policy": str(tiny_gpt2),
        "steps": "3", "batch_size": "8", "mini_batch_size": "4", "lr": "0.001", "kl_coef": "0.05",
        "max_new_tokens": "8", "seed": "0",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/training/trainingrun/add/?kind=ppo", form)
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.PPO, launched_by=admin)
    assert response.status_code == 302 and response["Location"].endswith(f"/{run.pk}/change/")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error  # Celery runs eagerly without a broker
    assert run.parameters["steps"] == 3 and run.parameters["reward_model"] == str(marker_reward_model)
    assert run.output_dir.endswith(f"ppo-run-{run.pk}") and "step 3/3" in run.log_tail
    assert (Path(run.output_dir) / "ppo_curves.png").is_file()
    change = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert "reward " in change and "→" in change and "ppo_curves.png" in change
    assert client.get(f"/admin/training/trainingrun/{run.pk}/plot/ppo_curves.png").status_code == 200


def test_the_ppo_launch_form_refuses_bad_settings_and_an_unknown_reward_model(admin_client, settings, tmp_path):
    settings.EXPORT_DIR = str(tmp_path)
    settings.MODELS_DIR = str(tmp_path / "no-models")
    (tmp_path / "oasst-trees.jsonl").write_text("")
    form = {
        "data_file": "oasst-trees.jsonl", "reward_model": "/etc", "policy": "", "steps": "3", "batch_size": "6",
        "mini_batch_size": "4", "lr": "0.001", "kl_coef": "0.05", "max_new_tokens": "8", "seed": "0",
    }
    response = admin_client.post("/admin/training/trainingrun/add/?kind=ppo", form)
    errors = response.context["form"].errors
    assert response.status_code == 200
    assert "reward_model" in errors and "prepare_base_models" in str(errors["policy"])
    assert not TrainingRun.objects.filter(kind=TrainingRun.Kind.PPO, launched_by__isnull=False).exists()
    assert admin_client.get("/admin/training/trainingrun/add/?kind=nonsense").status_code == 404
