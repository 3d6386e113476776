"""A superuser launches training runs from the admin in the browser: every kind the launch page offers, then
an SFT run that a worker (Celery runs eagerly here) trains, and the run's page with its result and lineage."""

import pytest

from tests.factories import PASSWORD, AdminFactory
from tests.training.tiny_models import build_tiny_gpt2, write_reviewed_export
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_superuser_opens_every_launch_form_and_launches_an_sft_run(
    live_server, page, screenshot, console_errors, settings, tmp_path
):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    (tmp_path / "exports").mkdir()
    write_reviewed_export(tmp_path / "exports" / "oasst-trees.jsonl", trees=20, seed=1)
    policy = build_tiny_gpt2(tmp_path / "policy")
    AdminFactory(username="root")

    page.goto(live_server.url + "/admin/login/")
    page.get_by_label("Username:").fill("root")
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server.url + "/admin/training/trainingrun/")
    page.get_by_role("link", name="Add training run").click()
    forms = (("PPO", "reward model"), ("DPO", "policy"), ("SFT", "all paths"), ("reward model", "base model"))
    for kind, field in forms:
        page.get_by_role("link", name=kind, exact=True).click()
        page.get_by_role("strong").filter(has_text=kind).wait_for()  # the page names the kind it launches
        assert page.get_by_label(field, exact=False).first.is_visible(), kind
    page.get_by_role("link", name="SFT", exact=True).click()
    page.get_by_label("Export file").select_option("oasst-trees.jsonl")
    page.get_by_label("Policy").fill(str(policy))
    page.get_by_label("All paths").check()
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("Learning rate").fill("0.005")
    page.get_by_label("Batch size").fill("16")
    page.get_by_label("Lora rank").fill("0")
    screenshot("admin-launch-sft")
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("queued on the training queue").wait_for()  # the launch lands on the run's own page
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.SFT)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.parameters["all_paths"] is True and run.launched_by.username == "root"
    page.reload()
    assert "held-out loss" in page.content() and "Came from" in page.content()
    screenshot("admin-sft-run")
    page.get_by_role("link", name="Training runs").last.click()
    page.locator("#result_list").wait_for()
    assert "held-out loss" in page.locator("#result_list").inner_text()
    assert not console_errors
