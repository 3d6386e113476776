"""The contributor pages: terms gate, dashboard, one page per task type, submissions and skips."""

import pytest
from django.urls import reverse

from tasks import services
from tasks.models import Message, Task, TreeState
from tests.factories import UserFactory
from tests.tasks.builders import reply, review, write_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def contributor(client, small_trees):
    user = UserFactory(username="writer")
    client.force_login(user)
    return user


@pytest.fixture
def growing_prompt(small_trees, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        prompt = write_prompt(UserFactory(), text="What is **entropy**?")
        review(UserFactory(), "label_initial_prompt")
    return prompt


def new_task(client, task_type):
    response = client.post(reverse("task-new"), {"type": task_type})
    assert response.status_code == 302, response.content.decode()[:500]
    return Task.objects.get(pk=response.url.rstrip("/").split("/")[-1])


def test_landing_page_shows_live_counts_and_logged_in_users_go_to_their_dashboard(client, growing_prompt):
    page = client.get("/").content.decode()
    assert "Help train an open chat assistant" in page and "Trees ready for training" in page
    client.force_login(UserFactory())
    assert client.get("/").url == "/dashboard/"


def test_terms_gate_before_the_first_task(client, small_trees):
    newcomer = UserFactory(tos_accepted_at=None)
    client.force_login(newcomer)
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response.url == "/terms/?next=/dashboard/"
    assert client.post("/terms/", {"next": "/dashboard/"}).status_code == 400
    newcomer.refresh_from_db()
    assert newcomer.tos_accepted_at is None
    response = client.post("/terms/", {"accept": "on", "next": "/dashboard/"})
    assert response.url == "/dashboard/"
    newcomer.refresh_from_db()
    assert newcomer.tos_accepted_at is not None
    assert client.get("/dashboard/").status_code == 200


def test_terms_next_must_stay_on_this_site(client, small_trees):
    client.force_login(UserFactory(tos_accepted_at=None))
    response = client.post("/terms/", {"accept": "on", "next": "https://evil.example/"})
    assert response.url == "/dashboard/"


def test_dashboard_shows_available_task_types_and_points(client, contributor, growing_prompt):
    page = client.get("/dashboard/").content.decode()
    assert "Reply as the assistant" in page and "Give me a task" in page and "points today" in page
    fragment = client.get("/dashboard/available/").content.decode()
    assert 'data-task-type="assistant_reply"' in fragment


def test_dashboard_query_count_is_fixed(client, contributor, growing_prompt, django_assert_max_num_queries):
    with django_assert_max_num_queries(25) as first:
        client.get("/dashboard/")
    for i in range(5):
        write_prompt(UserFactory(), text=f"Another prompt {i}?")
    with django_assert_max_num_queries(len(first.captured_queries)):
        client.get("/dashboard/")


def test_write_a_prompt_in_the_browser_form(client, contributor):
    task = new_task(client, "initial_prompt")
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "Write a prompt" in page and f'data-draft-key="draft-{task.pk}"' in page
    response = client.post(f"/tasks/{task.pk}/submit/", {"text": "How do plants make sugar?"})
    assert response.status_code == 302 and response.url == f"/tasks/{task.pk}/done/"
    assert "Thank you" in client.get(response.url).content.decode()
    assert Message.objects.get(author=contributor).text == "How do plants make sugar?"


def test_a_refused_text_is_shown_again_with_the_reason(client, contributor):
    task = new_task(client, "initial_prompt")
    response = client.post(f"/tasks/{task.pk}/submit/", {"text": "x" * 2001})
    assert response.status_code == 400
    page = response.content.decode()
    assert "longer than 2000 characters" in page and "x" * 2001 in page
    assert not Message.objects.exists()


def test_reply_page_shows_the_conversation_rendered_safely(client, contributor, growing_prompt):
    task = new_task(client, "assistant_reply")
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "<strong>entropy</strong>" in page
    client.post(f"/tasks/{task.pk}/submit/", {"text": "A measure of <script>alert(1)</script> disorder."})
    message = Message.objects.get(author=contributor)
    other = UserFactory()
    client.force_login(other)
    review_task = new_task(client, "label_assistant_reply")
    page = client.get(f"/tasks/{review_task.pk}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert review_task.item_id == message.pk


def test_review_through_the_form(client, contributor, growing_prompt):
    reply(UserFactory(), "Entropy measures disorder.")
    task = new_task(client, "label_assistant_reply")
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert 'name="label-spam"' in page
    response = client.post(f"/tasks/{task.pk}/submit/", {"label-spam": "0", "label-lang_mismatch": "0",
                                                          "label-quality": "0.75", "comment": "good"})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.done and task.review.labels["quality"] == 0.75


def test_review_without_the_mandatory_label_is_refused(client, contributor, growing_prompt):
    reply(UserFactory(), "Entropy measures disorder.")
    task = new_task(client, "label_assistant_reply")
    response = client.post(f"/tasks/{task.pk}/submit/", {"label-quality": "1"})
    assert response.status_code == 400 and "Mandatory labels missing: spam" in response.content.decode()


def test_rank_through_the_form(client, contributor, growing_prompt, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = reply(UserFactory(), "Answer one.")
        second = reply(UserFactory(), "Answer two.")
        review(UserFactory(), "label_assistant_reply")
        review(UserFactory(), "label_assistant_reply")
    task = new_task(client, "rank_assistant_replies")
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "data-ranking" in page and "Answer one." in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/tasks/{task.pk}/submit/", {"ranking": [str(second.pk), str(first.pk)]})
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.rank == 0 and second.tree.state == TreeState.READY_FOR_EXPORT


def test_skip_with_a_reason(client, contributor, growing_prompt):
    task = new_task(client, "assistant_reply")
    response = client.post(f"/tasks/{task.pk}/skip/", {"reason": "unclear"})
    assert response.url == "/dashboard/"
    task.refresh_from_db()
    assert task.skipped and task.skip_reason == "unclear"


def test_no_task_page_when_nothing_fits(client, contributor):
    response = client.post(reverse("task-new"), {"type": "rank_assistant_replies"})
    assert response.status_code == 404 and "No task right now" in response.content.decode()


def test_another_users_task_is_not_shown(client, contributor):
    other = UserFactory()
    task = services.task_request(user=other, task_type="initial_prompt", lang="en")
    assert client.get(f"/tasks/{task.pk}/").status_code == 404
    assert client.post(f"/tasks/{task.pk}/submit/", {"text": "hijack"}).status_code == 404


def test_preview_renders_markdown_and_escapes_html(client, contributor):
    html = client.post("/preview/", {"text": "# Title\n<img src=x onerror=alert(1)>"}).content.decode()
    assert "<h1>Title</h1>" in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_language_check_warns_about_another_language(client, contributor):
    german = "Das ist ein ziemlich langer deutscher Satz über das Wetter und die Berge."
    assert "another language" in client.post("/lang-check/", {"text": german, "lang": "en"}).content.decode()
    english = "This is a fairly long English sentence about the weather and the mountains."
    assert "another language" not in client.post("/lang-check/", {"text": english, "lang": "en"}).content.decode()


def test_language_picker_changes_the_task_language_for_the_session(client, contributor, growing_prompt):
    client.post("/language/", {"lang": "de", "next": "/dashboard/"})
    assert client.session["task_lang"] == "de"
    assert client.post(reverse("task-new"), {"type": "assistant_reply"}).status_code == 404
    client.post("/language/", {"lang": "xx", "next": "https://evil.example/"})
    assert client.session["task_lang"] == "de"


def test_pages_need_a_login(client):
    for path in ("/dashboard/", "/dashboard/available/"):
        assert client.get(path).url.startswith("/accounts/login/")


@pytest.fixture
def task_of_type(client, contributor, growing_prompt, django_capture_on_commit_callbacks):
    def make(task_type):
        if task_type == "label_initial_prompt":
            write_prompt(UserFactory(), text="Another prompt to review?")
        if task_type == "rank_assistant_replies":
            with django_capture_on_commit_callbacks(execute=True):
                reply(UserFactory(), "Answer one.")
                reply(UserFactory(), "Answer two.")
                review(UserFactory(), "label_assistant_reply")
                review(UserFactory(), "label_assistant_reply")
        return new_task(client, task_type)

    return make


@pytest.mark.parametrize("task_type", ["assistant_reply", "label_initial_prompt", "rank_assistant_replies"])
def test_task_page_query_count_is_fixed(client, task_of_type, task_type, django_assert_num_queries):
    task = task_of_type(task_type)
    with django_assert_num_queries(4):  # session, user, the task, this session's progress (one aggregate)
        assert client.get(f"/tasks/{task.pk}/").status_code == 200


@pytest.mark.parametrize("task_type", ["assistant_reply", "label_initial_prompt", "rank_assistant_replies"])
def test_every_task_page_teaches_the_job(client, task_of_type, task_type):
    task = task_of_type(task_type)
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert f'data-guidelines="{task_type}"' in page and "Good example" in page and "Bad example" in page
    assert 'id="session-progress"' in page and "0 tasks done" in page
    assert "Submissions are final" in page
    if task_type == "label_initial_prompt":
        assert page.count('class="label-guide') == len(task.payload["valid_labels"])
        assert 'class="shortcuts' in page


def test_landing_page_query_count_is_fixed(client, growing_prompt, django_assert_num_queries):
    from django.core.cache import cache

    cache.clear()
    with django_assert_num_queries(3):  # the three counts, then cached
        client.get("/")
    with django_assert_num_queries(0):
        client.get("/")
