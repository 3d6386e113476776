"""The task endpoints answer tasks.api.task_data, built without DRF's serializer machinery: it must equal
TaskSerializer (the schema the API documents) for every task type and state."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from oasst.errors import ServiceError
from tasks import services
from tasks.api import TaskSerializer, task_data
from tasks.models import Task, TaskType
from tests.factories import UserFactory
from tests.tasks.builders import open_task, prompt_in_ranking, write_prompt

pytestmark = pytest.mark.django_db


def same(task: Task) -> dict:
    ours, theirs = task_data(task), TaskSerializer(task).data
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    return ours


def test_every_task_type_the_queue_hands_out_serializes_as_the_schema_says(small_trees):
    writers = [UserFactory() for _ in range(3)]
    prompt_in_ranking(writers)
    write_prompt(writers[0], text="A prompt still waiting for its review?")
    seen = set()
    for task_type in TaskType.values:
        user = UserFactory()
        try:
            task = services.task_request(user=user, task_type=task_type, lang="en")
        except ServiceError:  # this type is disabled, or has no item in these trees
            continue
        seen.add(same(task)["type"])
        services.task_ack(user=user, task_id=task.pk)
        same(Task.objects.get(pk=task.pk))  # acked_at set
    assert {"initial_prompt", "rank_assistant_replies", "label_initial_prompt"} <= seen


def test_payload_edge_cases_serialize_alike():
    user = UserFactory()
    for payload in (
        {},
        {"conversation": [{"id": "2f1c5c1e-8c1b-4f52-9d1e-1b2c3d4e5f60", "role": "prompter", "text": "Hi"}]},
        {"conversation": [], "reply_messages": [], "valid_labels": [], "mandatory_labels": [], "mode": "simple",
         "message_id": "2f1c5c1e-8c1b-4f52-9d1e-1b2c3d4e5f60"},
        {"reply_messages": [{"id": "2f1c5c1e-8c1b-4f52-9d1e-1b2c3d4e5f60", "role": "assistant", "text": "<b>x</b>",
                             "lang": "de"}], "unrelated": 1},
    ):
        task = open_task(user, TaskType.RANK_ASSISTANT_REPLIES, None, **payload)
        same(task)
        Task.objects.filter(pk=task.pk).update(acked_at=timezone.now() - timedelta(microseconds=1), done=True,
                                               skipped=True)
        same(Task.objects.get(pk=task.pk))
