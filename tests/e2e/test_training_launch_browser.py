"""A superuser launches training runs from the admin in the browser: every kind the launch page offers, then
an SFT run that the embedded worker (Celery is eager here, as under `make run`) trains off the request while
the run's page shows its progress, then its result and lineage; and, on a fresh install, makes an export."""

import time

import pytest

from oasst import embedded
from tests.factories import PASSWORD, AdminFactory
from tests.training.tiny_models import build_tiny_gpt2, write_reviewed_export
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def embedded_worker():
    """What runserver starts under the embedded default."""
    worker = embedded.start()
    yield worker
    worker.idle(seconds=120)
    embedded.stop()


def log_in_to_the_admin(page, live_server) -> None:
    page.goto(live_server.url + "/admin/login/")
    page.get_by_label("Username:").fill("root")
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_superuser_opens_every_launch_form_and_launches_an_sft_run(
    live_server, page, screenshot, console_errors, settings, tmp_path, embedded_worker
):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    (tmp_path / "exports").mkdir()
    write_reviewed_export(tmp_path / "exports" / "oasst-trees.jsonl", trees=20, seed=1)
    policy = build_tiny_gpt2(tmp_path / "policy")
    AdminFactory(username="root")

    log_in_to_the_admin(page, live_server)
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
    started = time.monotonic()
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("queued on the training queue").wait_for()  # the launch lands on the run's own page
    assert time.monotonic() - started < 5  # the run trains on the embedded worker's thread, not in the request
    assert page.get_by_text("the page reloads every 5 seconds until it ends").is_visible()
    screenshot("admin-sft-run-in-progress")
    page.get_by_text("held-out loss").wait_for(timeout=120_000)  # the page reloaded itself until the run ended
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.SFT)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.parameters["all_paths"] is True and run.launched_by.username == "root"
    assert "Came from" in page.content() and "reloads every 5 seconds" not in page.content()
    screenshot("admin-sft-run")
    page.get_by_role("link", name="Training runs").last.click()
    page.locator("#result_list").wait_for()
    assert "held-out loss" in page.locator("#result_list").inner_text()
    assert not console_errors


def test_on_a_fresh_install_the_launch_page_says_how_to_make_an_export_and_makes_one(
    live_server, page, screenshot, console_errors, settings, tmp_path
):
    settings.EXPORT_DIR = str(tmp_path / "exports")
    AdminFactory(username="root")
    log_in_to_the_admin(page, live_server)
    page.goto(live_server.url + "/admin/training/trainingrun/add/?kind=sft")
    assert page.get_by_text("manage.py export_trees").first.is_visible()
    page.get_by_role("button", name="Launch").click()  # refused, with the way out in the field's error
    page.locator(".errorlist").get_by_text("No export file yet").wait_for()
    screenshot("admin-launch-no-export")
    page.get_by_role("button", name="Make an export now").click()
    page.get_by_text("holds no tree").wait_for()  # nothing is ready for export on a fresh install, and it says so
    options = page.get_by_label("Export file").locator("option").all_inner_texts()
    assert len(options) == 1 and options[0].endswith(".jsonl.gz") and "manifest" not in options[0]
    assert page.get_by_role("strong").filter(has_text="SFT").is_visible()  # back on the form it came from
    assert not page.get_by_role("button", name="Make an export now").is_visible()
    assert not console_errors
