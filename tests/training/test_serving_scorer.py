"""training tells tasks which run's reward model is in service (tasks.models.ServingScorer), in the transaction that
puts a run in or out of service, so the ranking queue weighs only that run's scores: from the run page, and not on
a refusal."""

import pytest

from tasks.models import ServingScorer
from tests.training.test_serving import fake_model_folder, promoter, reward_run, service_url

GOOD = {"eval": {"accuracy": 0.9, "length_rule": {"accuracy": 0.5}}}


def scorer_run_id():
    return ServingScorer.objects.filter(pk=ServingScorer.SINGLETON).values_list("run_id", flat=True).first()


@pytest.mark.django_db
def test_putting_runs_in_and_out_of_service_from_the_run_page_tells_the_queue(client, tmp_path):
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = reward_run(fake_model_folder(tmp_path / "first", GOOD))
    second = reward_run(fake_model_folder(tmp_path / "second", GOOD))
    client.force_login(promoter())
    assert scorer_run_id() is None
    assert client.post(service_url(first, "promote"), {"choice": "first model", "apply": "1"}).status_code == 302
    assert scorer_run_id() == first.pk
    assert client.post(service_url(second, "promote"), {"choice": "beats the model in service", "apply": "1"}
                       ).status_code == 302
    assert scorer_run_id() == second.pk and ServingScorer.objects.count() == 1
    assert client.post(service_url(second, "retire"), {"choice": "worse than expected", "apply": "1"}
                       ).status_code == 302
    assert ServingScorer.objects.get().run_id is None


@pytest.mark.django_db
def test_a_refused_promotion_leaves_the_queue_on_the_run_in_service(client, tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "weak").mkdir()
    serving_run = reward_run(fake_model_folder(tmp_path / "good", GOOD))
    below = {"eval": {"accuracy": 0.5, "length_rule": {"accuracy": 0.6}}}
    weak = reward_run(fake_model_folder(tmp_path / "weak", below))
    client.force_login(promoter())
    client.post(service_url(serving_run, "promote"), {"choice": "first model", "apply": "1"})
    response = client.post(service_url(weak, "promote"), {"choice": "beats the model in service", "apply": "1"},
                           follow=True)
    assert "does not beat the length rule" in response.content.decode()
    assert scorer_run_id() == serving_run.pk
    response = client.post(service_url(weak, "retire"), {"choice": "replaced", "apply": "1"}, follow=True)
    assert "is not in service" in response.content.decode()
    assert scorer_run_id() == serving_run.pk
