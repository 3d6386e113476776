"""message_reward_scores_set: the one writer of Message.reward_score (used by `manage.py score_messages`)."""

import uuid

import pytest

from tasks.models import Message, MessageTree, Role, TreeState
from tasks.services import message_reward_scores_set


@pytest.mark.django_db
def test_scores_land_on_their_messages_and_unknown_ids_are_skipped():
    tree = MessageTree.objects.create(
        state=TreeState.READY_FOR_EXPORT, lang="en", goal_tree_size=12, max_depth=3, max_children_count=3
    )
    prompt = Message.objects.create(tree=tree, role=Role.PROMPTER, text="a question", lang="en", depth=0)
    reply = Message.objects.create(tree=tree, parent=prompt, role=Role.ASSISTANT, text="an answer", lang="en", depth=1)

    updated = message_reward_scores_set(scores={reply.pk: 0.75, uuid.uuid4(): 1.0})

    assert updated == 1
    assert Message.objects.get(pk=reply.pk).reward_score == 0.75
    assert Message.objects.get(pk=prompt.pk).reward_score is None
