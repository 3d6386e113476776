"""Lineage between runs: a run records the runs that wrote the folders it started from (its policy, its reward
model), from the command line and from the admin, and the admin links a run to its parents and its children."""

from contextlib import ExitStack
from pathlib import Path

import pytest
from django.urls import reverse

from tests.factories import UserFactory
from training import services
from training.models import TrainingRun, TrainingRunParent

from .tiny_models import TINY_PPO, recorded_command_run, write_reviewed_export

# The module fixture records runs: every test declares the database so that it is set up even when run alone.
pytestmark = pytest.mark.django_db

Role = TrainingRunParent.Role


def succeeded_run(kind: str, output_dir: Path, **parameters) -> TrainingRun:
    run = services.training_run_start(
        kind=kind, parameters=parameters, data_file="export.jsonl", data_sha256="0" * 64, output_dir=str(output_dir)
    )
    return services.training_run_succeed(run=run, metrics={}, code_version="test")


def delete_outside_the_test(django_db_blocker, run: TrainingRun) -> None:
    with django_db_blocker.unblock():
        run.delete()


def parents_by_role(run: TrainingRun) -> dict[str, TrainingRun]:
    return {link.role: link.parent for link in run.parent_links.select_related("parent")}


@pytest.fixture(scope="module")
def chain(tiny_gpt2, marker_reward_model, synthetic_export, tmp_path_factory, django_db_setup, django_db_blocker):
    """SFT from the tiny GPT-2, a recorded reward-model run on the marker reward model's folder, then PPO and DPO
    started from the SFT folder; every run is deleted after the module."""
    folder = tmp_path_factory.mktemp("lineage")
    demonstrations = folder / "reviewed.jsonl"
    write_reviewed_export(demonstrations, trees=20, seed=1)
    with ExitStack() as stack:
        _, _, sft = stack.enter_context(recorded_command_run(
            django_db_blocker, "train_sft", folder / "sft", data=str(demonstrations), policy=str(tiny_gpt2),
            epochs=1, batch_size=8, max_length=64, eval_fraction=0.25, samples=1, sample_tokens=4,
        ))
        with django_db_blocker.unblock():
            reward = succeeded_run(TrainingRun.Kind.REWARD_MODEL, marker_reward_model)
        stack.callback(delete_outside_the_test, django_db_blocker, reward)
        _, _, ppo = stack.enter_context(recorded_command_run(
            django_db_blocker, "train_ppo", folder / "ppo", reward_model=str(marker_reward_model),
            prompts=str(synthetic_export), policy=str(folder / "sft"),
            **{**TINY_PPO, "steps": 2, "eval_every": 2, "checkpoint_every": 2, "batch_size": 8, "mini_batch_size": 8},
        ))
        _, _, dpo = stack.enter_context(recorded_command_run(
            django_db_blocker, "train_dpo", folder / "dpo", data=str(synthetic_export), policy=str(folder / "sft"),
            epochs=0.2, batch_size=8, max_length=64, eval_fraction=0.25, seed=0,
        ))
        yield {"sft": sft, "reward": reward, "ppo": ppo, "dpo": dpo, "folder": folder}


def test_ppo_from_an_sft_folder_records_the_sft_run_and_the_reward_model_run(chain):
    ppo = chain["ppo"]
    assert ppo.status == TrainingRun.Status.SUCCEEDED
    assert parents_by_role(ppo) == {Role.POLICY: chain["sft"], Role.REWARD_MODEL: chain["reward"]}
    assert set(chain["sft"].children.all()) == {ppo, chain["dpo"]}


def test_dpo_from_an_sft_folder_records_its_sft_run(chain):
    assert parents_by_role(chain["dpo"]) == {Role.POLICY: chain["sft"]}


def test_a_folder_no_run_wrote_records_no_parent(chain, tiny_gpt2):
    sft = chain["sft"]
    assert not sft.parents.exists()  # started from the hand-made tiny GPT-2
    run = succeeded_run(TrainingRun.Kind.DPO, chain["folder"] / "elsewhere", policy=str(tiny_gpt2))
    assert not run.parents.exists()


def test_only_the_newest_succeeded_run_of_a_folder_is_a_parent(tmp_path):
    succeeded_run(TrainingRun.Kind.SFT, tmp_path / "sft")
    newer = succeeded_run(TrainingRun.Kind.SFT, tmp_path / "sft")
    failed = services.training_run_start(
        kind=TrainingRun.Kind.SFT, parameters={}, data_file="x", data_sha256="", output_dir=str(tmp_path / "sft")
    )
    services.training_run_fail(run=failed, error="crashed")
    run = succeeded_run(TrainingRun.Kind.PPO, tmp_path / "ppo", policy=str(tmp_path / "sft"))
    assert parents_by_role(run) == {Role.POLICY: newer}


def test_a_relative_folder_finds_the_run_that_recorded_it_resolved(tmp_path, monkeypatch):
    sft = succeeded_run(TrainingRun.Kind.SFT, (tmp_path / "sft").resolve())
    monkeypatch.chdir(tmp_path)
    run = succeeded_run(TrainingRun.Kind.DPO, tmp_path / "dpo", policy="sft")
    assert parents_by_role(run) == {Role.POLICY: sft}


def test_a_run_launched_from_the_admin_records_its_parents_when_queued(
    admin_client, settings, tmp_path, chain, synthetic_export, marker_reward_model, django_capture_on_commit_callbacks
):
    settings.EXPORT_DIR = str(tmp_path)
    (tmp_path / "oasst-trees.jsonl").write_bytes(synthetic_export.read_bytes())
    form = {
        "data_file": "oasst-trees.jsonl", "reward_model": str(marker_reward_model),
        "policy": str(chain["folder"] / "sft"), "steps": "3", "batch_size": "8", "mini_batch_size": "4",
        "lr": "0.001", "kl_coef": "0.05", "max_new_tokens": "8", "seed": "0",
    }
    with django_capture_on_commit_callbacks(execute=False):  # the job is not run: the links are made at launch
        response = admin_client.post("/admin/training/trainingrun/add/?kind=ppo", form)
    assert response.status_code == 302, response.context["form"].errors
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.PPO, status=TrainingRun.Status.QUEUED)
    assert parents_by_role(run) == {Role.POLICY: chain["sft"], Role.REWARD_MODEL: chain["reward"]}


def change_page(run: TrainingRun) -> str:
    return reverse("admin:training_trainingrun_change", args=[run.pk])


def test_the_sft_change_page_links_its_children(admin_client, chain):
    page = admin_client.get(change_page(chain["sft"])).content.decode()
    assert f'<a href="{change_page(chain["ppo"])}">{chain["ppo"]}</a>' in page
    assert f'<a href="{change_page(chain["dpo"])}">{chain["dpo"]}</a>' in page


def test_the_ppo_change_page_links_its_sft_and_reward_model_parents(admin_client, chain):
    page = admin_client.get(change_page(chain["ppo"])).content.decode()
    assert f'policy: <a href="{change_page(chain["sft"])}">{chain["sft"]}</a>' in page
    assert f'reward model: <a href="{change_page(chain["reward"])}">{chain["reward"]}</a>' in page


def test_a_moderator_without_training_permission_sees_no_run_and_no_link(client, chain, moderators_group):
    moderator = UserFactory(is_staff=True)
    moderator.groups.add(moderators_group)
    client.force_login(moderator)
    for run in (chain["sft"], chain["ppo"]):
        response = client.get(change_page(run))
        assert response.status_code == 403
        assert change_page(chain["ppo"]).encode() not in response.content


def test_a_reward_model_trained_on_from_another_runs_folder_records_it_as_its_base_model(tmp_path):
    first = succeeded_run(TrainingRun.Kind.REWARD_MODEL, tmp_path / "rm")
    run = succeeded_run(TrainingRun.Kind.REWARD_MODEL, tmp_path / "rm-2", base_model=str(tmp_path / "rm"))
    assert parents_by_role(run) == {Role.BASE_MODEL: first}
