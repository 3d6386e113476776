"""A moderator holding training.promote_trainingrun (and training.launch_run) clicks every control of the reward
model in service in the browser: "Put in service" behind its confirmation page (and its refusal for a run below
the length rule), "Re-score the live replies" with its progress line, "Take out of service", then "Run a challenge
now" on the runs list and "Cancel the run" on a queued run; each visible outcome, then the audit log and the rows."""

import re

import pytest
from django.contrib.auth.models import Permission

from oasst.models import ModerationEvent
from tests.factories import PASSWORD, UserFactory
from tests.training.conftest import marker_reward_model, synthetic_export, tiny_bert  # noqa: F401 - fixtures
from tests.training.test_serving import audit, fake_model_folder, live_tree, promotable_copy, reward_run
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/training/trainingrun/"


def moderator():
    user = UserFactory(username="mod", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="training", codename__in=["promote_trainingrun", "view_trainingrun", "launch_run"]))
    return type(user).objects.get(pk=user.pk)


def log_in_to_the_admin(page, live_server) -> None:
    page.goto(live_server.url + "/admin/login/")
    page.get_by_label("Username:").fill("mod")
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Site administration").first.wait_for()


def service_buttons(page) -> list[str]:
    return page.locator(".oasst-run-service a.button").all_inner_texts()


def service_line(page) -> str:
    return page.locator(".field-service .readonly").inner_text()


def test_a_moderator_puts_a_reward_model_in_service_re_scores_and_takes_it_out(
    live_server, page, screenshot, console_errors, marker_reward_model, tmp_path  # noqa: F811 - the fixture
):
    user = moderator()
    (tmp_path / "weak").mkdir()
    below = {"eval": {"accuracy": 0.5, "length_rule": {"accuracy": 0.6}}}
    weak = reward_run(fake_model_folder(tmp_path / "weak", below))
    run = reward_run(promotable_copy(marker_reward_model, tmp_path))
    first = live_tree(2)
    log_in_to_the_admin(page, live_server)

    # the refusal: a run below the length rule; the error says why and nothing changes
    page.goto(f"{live_server.url}{CHANGELIST}{weak.pk}/change/")
    assert service_line(page) == "Not in service." and service_buttons(page) == ["Put in service"]
    page.locator(".oasst-run-service").get_by_role("link", name="Put in service").click()
    page.get_by_role("heading", name=re.compile("Put in service")).wait_for()
    page.get_by_role("button", name="Put in service").click()  # no reason: asked for one, nothing applied
    page.get_by_text("Give a reason: pick one or write it under Details.").wait_for()
    page.get_by_label("First model").check()
    page.get_by_role("button", name="Put in service").click()
    error = page.locator(".messagelist .error")
    error.wait_for()
    assert f"Run {weak.pk} does not beat the length rule on its held-out pairs" in error.inner_text()
    assert "accuracy 0.500, length rule 0.600" in error.inner_text()
    assert page.url == f"{live_server.url}{CHANGELIST}{weak.pk}/change/"
    assert service_line(page) == "Not in service." and service_buttons(page) == ["Put in service"]
    screenshot("admin-service-refused")
    assert not TrainingRun.objects.filter(in_service=True).exists() and not audit("reward_model_promote")

    # put in service: the confirmation page, a reason chosen and typed, confirmed
    page.goto(f"{live_server.url}{CHANGELIST}{run.pk}/change/")
    assert service_line(page) == "Not in service." and service_buttons(page) == ["Put in service"]
    page.locator(".oasst-run-service").get_by_role("link", name="Put in service").click()
    page.get_by_role("heading", name=re.compile("Put in service")).wait_for()
    run.refresh_from_db()
    assert not run.in_service  # the confirmation page changes nothing
    assert page.get_by_label("Beats the model in service").is_visible()
    page.get_by_label("First model").check()
    page.get_by_label("Details").fill("the marker model")
    screenshot("admin-service-confirm")
    page.get_by_role("button", name="Put in service").click()
    page.locator(".messagelist .success").get_by_text("Put in service:").wait_for()
    line = service_line(page)
    assert line.startswith("In service since ") and line.endswith("live replies scored by this run: 2 of 2.")
    assert service_buttons(page) == ["Take out of service", "Re-score the live replies"]
    run.refresh_from_db()
    assert run.in_service and run.in_service_since is not None
    assert {reply.pk for reply in first} == set(
        type(first[0]).objects.filter(reward_run_id=run.pk).values_list("pk", flat=True))  # the promotion re-scored
    [event] = audit("reward_model_promote")
    assert (event.actor, event.target_id, event.reason) == (user, str(run.pk), "first model: the marker model")
    assert event.after["in_service"] == run.pk
    page.get_by_role("link", name="Training runs").last.click()
    page.locator("#result_list").wait_for()
    assert page.locator(f"#result_list tr:has(a[href$='/{run.pk}/change/']) .field-in_service_mark img").get_attribute(
        "alt") == "True"
    screenshot("admin-service-in-service")

    # a reply accepted while no job ran: re-scoring sends the job again, the progress line catches up
    late = live_tree(1)[0]
    page.goto(f"{live_server.url}{CHANGELIST}{run.pk}/change/")
    assert service_line(page).endswith("live replies scored by this run: 2 of 3.")
    page.locator(".oasst-run-service").get_by_role("link", name="Re-score the live replies").click()
    page.get_by_role("heading", name=re.compile("Re-score the live replies")).wait_for()
    page.get_by_label("Resume after a worker stopped").check()
    page.get_by_role("button", name="Re-score the live replies").click()
    page.locator(".messagelist .success").get_by_text("Re-score the live replies:").wait_for()
    assert page.get_by_text("scored by this run: 3 of 3").is_visible()
    screenshot("admin-service-rescored")
    late.refresh_from_db()
    assert late.reward_run_id == run.pk and late.reward_score is not None
    [event] = audit("reward_model_rescore")
    assert (event.actor, event.reason, event.before) == (
        user, "resume after a worker stopped", {"scored": 2, "live_replies": 3})

    # take out of service: "Other" with the reason typed
    page.locator(".oasst-run-service").get_by_role("link", name="Take out of service").click()
    page.get_by_role("heading", name=re.compile("Take out of service")).wait_for()
    assert page.get_by_label("Worse than expected").is_visible() and page.get_by_label("Replaced").is_visible()
    page.get_by_label("Other (say which below)").check()
    page.get_by_label("Details").fill("scores drift on long replies")
    page.get_by_role("button", name="Take out of service").click()
    page.locator(".messagelist .success").get_by_text("Take out of service:").wait_for()
    assert service_line(page) == "Not in service." and service_buttons(page) == ["Put in service"]
    screenshot("admin-service-retired")
    run.refresh_from_db()
    assert not run.in_service and run.in_service_since is None
    assert not TrainingRun.objects.filter(in_service=True).exists()
    [event] = audit("reward_model_retire")
    assert (event.actor, event.target_id, event.reason) == (user, str(run.pk), "scores drift on long replies")
    assert ModerationEvent.objects.count() == 3
    # the only error responses: the confirmation page re-shown (400) when no reason was given
    assert console_errors and all(re.fullmatch(rf"400 .*/{weak.pk}/service/promote/|.*status of 400.*", error)
                                  for error in console_errors), console_errors


def test_a_moderator_runs_a_challenge_from_the_runs_list_and_cancels_a_queued_run(
    live_server, page, screenshot, console_errors, settings, tmp_path
):
    settings.EXPORT_DIR = str(tmp_path / "exports")  # nothing ready for export: the challenge fails at once
    user = moderator()
    log_in_to_the_admin(page, live_server)

    page.goto(live_server.url + CHANGELIST)
    page.get_by_role("button", name="Run a challenge now").click()
    page.locator(".messagelist .success").get_by_text("queued on the training queue").wait_for()
    challenge = TrainingRun.objects.get()
    assert page.url == f"{live_server.url}{CHANGELIST}{challenge.pk}/change/"
    facts = page.locator(".field-challenge .readonly").inner_text()
    assert "No conversation tree is ready for export" in facts
    assert not page.locator(".oasst-run-cancel").count()  # it already ended (Celery is eager)
    screenshot("admin-challenge-run")
    assert challenge.kind == TrainingRun.Kind.CHALLENGE and challenge.launched_by == user
    assert challenge.status == TrainingRun.Status.FAILED
    assert not TrainingRun.objects.filter(in_service=True).exists()

    # one challenge at a time: refused on the list, nothing queued
    queued = TrainingRun.objects.create(kind=TrainingRun.Kind.CHALLENGE)
    page.goto(live_server.url + CHANGELIST)
    page.get_by_role("button", name="Run a challenge now").click()
    page.locator(".messagelist .error").get_by_text(
        f"Challenge run {queued.pk} is queued: one challenge at a time.").wait_for()
    assert TrainingRun.objects.count() == 2

    # cancel the queued run: the confirmation page, a reason chosen and typed
    page.goto(f"{live_server.url}{CHANGELIST}{queued.pk}/change/")
    assert page.get_by_text("the page reloads every 5 seconds until it ends").is_visible()
    page.get_by_role("link", name="Cancel the run").click()
    page.get_by_role("heading", name=re.compile("Cancel the run")).wait_for()
    queued.refresh_from_db()
    assert queued.status == TrainingRun.Status.QUEUED  # the confirmation page changes nothing
    page.get_by_label("Taking too long").check()
    page.get_by_label("Details").fill("stuck behind another run")
    screenshot("admin-cancel-confirm")
    page.get_by_role("button", name="Cancel the run").click()
    page.locator(".messagelist .success").get_by_text("Cancelled:").wait_for()
    assert not page.locator(".oasst-run-cancel").count()
    assert "reloads every 5 seconds" not in page.content()
    screenshot("admin-cancelled")
    queued.refresh_from_db()
    assert queued.status == TrainingRun.Status.CANCELLED and queued.finished_at is not None
    assert queued.error == "cancelled by mod: taking too long: stuck behind another run"
    [event] = ModerationEvent.objects.filter(action="training_run_cancel")
    assert (event.actor, event.target_id, event.reason) == (
        user, str(queued.pk), "taking too long: stuck behind another run")
    assert event.after == {"status": TrainingRun.Status.CANCELLED}
    assert not console_errors
