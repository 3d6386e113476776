"""The task pages' answers behind issue 16's fixes: POST/redirect/GET to a thank-you page, the
submit address opened with GET, "all replies are bad" without JavaScript, refusals of a report as
visible errors, skips confirmed, and language warnings naming both languages."""

import re

import pytest
from django.urls import reverse

from ranking.models import Ranking
from tasks import services
from tasks.models import FlaggedMessage, Message
from tests.factories import UserFactory
from tests.tasks.builders import reply, review, write_prompt
from tests.tasks.test_views import new_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def contributor(client, small_trees):
    user = UserFactory()
    client.force_login(user)
    return user


@pytest.fixture
def rank_task(client, contributor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        write_prompt(UserFactory(), text="What is **entropy**?")
        review(UserFactory(), "label_initial_prompt")
        reply(UserFactory(), "Answer one.")
        reply(UserFactory(), "Answer two.")
        review(UserFactory(), "label_assistant_reply")
        review(UserFactory(), "label_assistant_reply")
    return new_task(client, "rank_assistant_replies")


def thanks(page: str) -> str:
    """The thank-you section without its CSRF token (masked afresh on each page)."""
    section = re.search(r'<section class="done".*?</section>', page, re.S).group(0)
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", section)


def test_a_submission_redirects_to_a_thank_you_page_that_a_reload_shows_again(client, contributor):
    task = new_task(client, "initial_prompt")
    response = client.post(reverse("task-submit", args=[task.pk]), {"text": "How do plants make sugar?"})
    assert response.status_code == 302 and response.url == reverse("task-done", args=[task.pk])
    first = client.get(response.url).content.decode()
    assert "Thank you!" in first and "points now" in first and f'data-draft-clear="draft-{task.pk}"' in first
    assert thanks(client.get(response.url).content.decode()) == thanks(first)
    assert Message.objects.filter(author=contributor).count() == 1


def test_the_submit_address_opened_with_get_leads_to_the_task_or_its_thank_you_page(client, contributor):
    task = new_task(client, "initial_prompt")
    submit = reverse("task-submit", args=[task.pk])
    response = client.get(submit)
    assert response.status_code == 302 and response.url == reverse("task", args=[task.pk])
    client.post(submit, {"text": "Why is the sky blue?"})
    response = client.get(submit)
    assert response.status_code == 302 and response.url == reverse("task-done", args=[task.pk])
    assert Message.objects.filter(author=contributor).count() == 1


def test_the_thank_you_page_of_an_open_task_leads_back_to_the_task(client, contributor):
    task = new_task(client, "initial_prompt")
    response = client.get(reverse("task-done", args=[task.pk]))
    assert response.status_code == 302 and response.url == reverse("task", args=[task.pk])


def test_the_thank_you_page_of_another_users_task_is_not_found(client, contributor):
    other = UserFactory()
    task = services.task_request(user=other, task_type="initial_prompt", lang="en")
    services.text_submit(user=other, task_id=task.pk, text="Mine, not yours?")
    assert client.get(reverse("task-done", args=[task.pk])).status_code == 404


def test_the_thank_you_page_without_this_submissions_outcome_shows_the_total(client, contributor):
    task = services.task_request(user=contributor, task_type="initial_prompt", lang="en")
    services.text_submit(user=contributor, task_id=task.pk, text="Sent through the API?")
    page = client.get(reverse("task-done", args=[task.pk])).content.decode()
    assert "Thank you!" in page and "0 points in total" in page and "now" not in page


def test_a_ticked_all_replies_are_bad_box_wins_over_the_lists_order(client, rank_task):
    """Without JavaScript the ranking's fields are still sent: the box decides."""
    offered = [item["id"] for item in rank_task.payload["reply_messages"]]
    response = client.post(reverse("task-submit", args=[rank_task.pk]), {"ranking": offered, "not_rankable": "on"})
    assert response.status_code == 302
    ranking = Ranking.objects.get(task=rank_task)
    assert ranking.not_rankable and ranking.ranking == []


def test_the_ranking_page_gives_each_reply_its_own_report_form(client, rank_task):
    page = client.get(reverse("task", args=[rank_task.pk])).content.decode()
    for item in rank_task.payload["reply_messages"]:
        assert f'<form id="report-{item["id"]}"' in page and f'form="report-{item["id"]}"' in page


def test_a_refused_report_answers_with_a_visible_escaped_error(client, contributor):
    message = write_prompt(UserFactory(), text="A prompt to report?")
    url = reverse("message-report", args=[message.pk])
    response = client.post(url, {"reason": "  "})
    assert response.status_code == 400
    assert response.content.decode() == '<span class="error" role="alert">Say why you report this message.</span>'
    assert not FlaggedMessage.objects.exists()
    response = client.post(url, {"reason": "<b>rude</b>"})
    assert response.status_code == 200 and "Reported. Thank you." in response.content.decode()


def test_a_skip_is_confirmed_on_the_dashboard(client, contributor):
    task = new_task(client, "initial_prompt")
    response = client.post(reverse("task-skip", args=[task.pk]), {"reason": "unclear"}, follow=True)
    assert "Task skipped." in response.content.decode()
    task.refresh_from_db()
    assert task.skipped


def test_the_language_warning_names_both_languages(client, contributor):
    german = "Das ist ein ziemlich langer deutscher Satz über das Wetter und die Berge."
    warning = client.post(reverse("lang-check"), {"text": german, "lang": "en"}).content.decode()
    assert "German" in warning and "English" in warning and "(de)" not in warning
    latin = "Gallia est omnis divisa in partes tres, quarum unam incolunt Belgae, aliam Aquitani."
    warning = client.post(reverse("lang-check"), {"text": latin, "lang": "en"}).content.decode()
    assert "English" in warning and "(la)" not in warning


def test_the_writing_box_has_no_maxlength_that_would_cut_a_paste(client, contributor):
    task = new_task(client, "initial_prompt")
    page = client.get(reverse("task", args=[task.pk])).content.decode()
    assert 'data-max-length="2000"' in page and 'maxlength="2000"' not in page
    response = client.post(reverse("task-submit", args=[task.pk]), {"text": "y" * 2001})
    assert response.status_code == 400 and "longer than 2000 characters" in response.content.decode()
    assert not Message.objects.exists()
