"""Under concurrent requests on PostgreSQL, one task goes to one user, no item is out with more
users than it needs, no parent passes its child limit, and a retried submit makes one message."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from oasst.errors import ServiceError
from tasks import selectors, services
from tasks.models import Message, MessageTree, Task, TaskType
from tests.factories import UserFactory
from tests.tasks.builders import labels_for, prompt_in_ranking, review, write_prompt

THREADS = 32
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def all_at_once(calls):
    """Run the calls in 32 threads released together; returns results (or the ServiceError raised)."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            barrier.wait()
            return call()
        except ServiceError as error:
            return error
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture
def crowd(db):
    return [UserFactory() for _ in range(THREADS)]


def codes(results):
    return Counter(getattr(r, "code", "ok") for r in results)


def test_a_prompt_needing_three_reviews_is_handed_to_three_users(crowd, tree_settings):
    tree_settings(num_reviews_initial_prompt=3)
    author = UserFactory()
    prompt = write_prompt(author)
    results = all_at_once([lambda u=u: services.task_request(user=u, task_type="label_initial_prompt", lang="en")
                           for u in crowd])
    assert codes(results) == {"ok": 3, "no_task": THREADS - 3}
    assert len({task.user_id for task in results if isinstance(task, Task)}) == 3
    prompt.refresh_from_db()
    assert prompt.reviews_pending == 3


def test_a_parent_gets_no_more_reply_tasks_than_free_slots(crowd, tree_settings):
    tree_settings(num_reviews_initial_prompt=1, max_children_count=3)
    author, reviewer = UserFactory(), UserFactory()
    prompt = write_prompt(author)
    review(reviewer, "label_initial_prompt")
    services.lottery_activate(lang="en")
    results = all_at_once([lambda u=u: services.task_request(user=u, task_type="assistant_reply", lang="en")
                           for u in crowd])
    assert codes(results) == {"ok": 3, "no_task": THREADS - 3}
    tasks = [r for r in results if isinstance(r, Task)]
    # all 3 submit at once: three children, never more
    all_at_once([lambda t=t: services.text_submit(user=t.user, task_id=t.pk, text=f"Answer from {t.user_id}")
                 for t in tasks])
    assert Message.objects.filter(parent=prompt).count() == 3
    tree = MessageTree.objects.get(pk=prompt.tree_id)
    assert (tree.message_count, tree.replies_pending, tree.awaiting_review) == (4, 0, 3)


def test_the_tree_goal_size_is_never_overbooked_by_concurrent_reply_requests(crowd, tree_settings):
    tree_settings(num_reviews_initial_prompt=1, goal_tree_size=3, max_children_count=5)
    prompt = write_prompt(UserFactory())
    review(UserFactory(), "label_initial_prompt")
    services.lottery_activate(lang="en")
    results = all_at_once([lambda u=u: services.task_request(user=u, task_type="assistant_reply", lang="en")
                           for u in crowd])
    assert codes(results)["ok"] == 2  # the prompt plus two replies make three
    assert MessageTree.objects.get(pk=prompt.tree_id).replies_pending == 2


def test_retried_submissions_with_one_client_id_make_one_message(crowd):
    user = crowd[0]
    task = services.task_request(user=user, task_type="initial_prompt", lang="en")
    results = all_at_once([lambda: services.text_submit(user=user, task_id=task.pk, text="Hello, tides?",
                                                        client_id="retry-1")] * THREADS)
    assert codes(results) == {"ok": THREADS}
    assert len({m.pk for m in results}) == 1
    assert Message.objects.filter(author=user).count() == 1


def test_concurrent_rankings_of_one_parent_neither_deadlock_nor_overshoot(crowd, tree_settings):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=1, goal_tree_size=3, num_required_rankings=3)
    prompt = prompt_in_ranking([UserFactory() for _ in range(3)])

    results = all_at_once([lambda u=u: services.task_request(user=u, task_type="rank_assistant_replies", lang="en")
                           for u in crowd])
    tasks = [r for r in results if isinstance(r, Task)]
    assert len(tasks) == 3
    submitted = all_at_once([lambda t=t: services.ranking_submit(
        user=t.user, task_id=t.pk, ranking=[m["id"] for m in t.payload["reply_messages"]]) for t in tasks])
    assert codes(submitted) == {"ok": 3}
    prompt.refresh_from_db()
    assert prompt.ranking_count == 3 and prompt.rankings_pending == 0
    assert MessageTree.objects.get(pk=prompt.tree_id).state == "ready_for_export"


def test_random_requests_from_many_users_respect_every_reservation(crowd, tree_settings):
    tree_settings(num_reviews_initial_prompt=2, num_reviews_reply=2, max_children_count=2, max_active_trees=3)
    authors = [UserFactory() for _ in range(4)]
    for i, author in enumerate(authors):
        write_prompt(author, text=f"Prompt number {i}")
    for index in range(2):
        for reviewer in (authors[(index + 1) % 4], authors[(index + 2) % 4]):
            task = services.task_request(user=reviewer, task_type="label_initial_prompt", lang="en")
            services.labels_submit(user=reviewer, task_id=task.pk, labels=labels_for(task, {"spam": 0}))
    for _round in range(2):
        results = all_at_once([lambda u=u: services.task_request(user=u, lang="en") for u in crowd])
        assert not [r for r in results if getattr(r, "code", "no_task") not in ("ok", "no_task")
                    and not isinstance(r, Task)]
    open_by_item = Counter(selectors.open_tasks().exclude(item=None).values_list("item_id", "type"))
    for (item_id, task_type), n in open_by_item.items():
        message = Message.objects.get(pk=item_id)
        if task_type == TaskType.LABEL_INITIAL_PROMPT:
            assert n <= 2 - message.review_count
        elif task_type == TaskType.ASSISTANT_REPLY:
            assert n <= 2 - message.children_count
    per_user_items = Counter(selectors.open_tasks().exclude(item=None).values_list("user_id", "item_id"))
    assert max(per_user_items.values(), default=1) == 1


def test_review_requests_and_submissions_on_one_tree_do_not_deadlock(crowd, tree_settings):
    tree_settings(num_reviews_initial_prompt=1, num_reviews_reply=3, max_children_count=8, goal_tree_size=20)
    author = UserFactory()
    write_prompt(author)
    review(UserFactory(), "label_initial_prompt")
    services.lottery_activate(lang="en")
    for index, writer in enumerate(crowd[:8]):
        task = services.task_request(user=writer, task_type="assistant_reply", lang="en")
        services.text_submit(user=writer, task_id=task.pk, text=f"Reply number {index}")
    reviewers = crowd[8:]
    def review_task(user):
        try:
            return services.task_request(user=user, task_type="label_assistant_reply", lang="en")
        except ServiceError:
            return None

    for _round in range(2):
        holding = [task for task in map(review_task, reviewers[:12]) if task]
        assert holding
        calls = [lambda t=t: services.labels_submit(user=t.user, task_id=t.pk, labels=labels_for(t, {"spam": 0}))
                 for t in holding]
        calls += [lambda u=u: services.task_request(user=u, task_type="label_assistant_reply", lang="en")
                  for u in reviewers[12:]]
        results = all_at_once(calls)  # any database error (a deadlock) would raise here
        assert all(isinstance(r, (Task, ServiceError)) or r.__class__.__name__ == "Review" for r in results)
        services.tasks_expire(now=timezone.now() + timedelta(days=3))
