"""Fixtures of the moderation tests: a moderator and a small conversation to moderate."""

import pytest

from tests.factories import UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt


@pytest.fixture
def moderator(moderators_group):
    user = UserFactory(username="mod", is_staff=True)
    user.groups.add(moderators_group)
    return user


@pytest.fixture
def conversation(small_trees, tree_settings, django_capture_on_commit_callbacks):
    """A reviewed prompt, a spam answer by "troll" and a follow-up to it."""
    tree_settings(goal_tree_size=10)
    with django_capture_on_commit_callbacks(execute=True):
        prompt = write_prompt(UserFactory(), text="Tell me a story.")
        review_of(UserFactory(), prompt)
    answer = reply_to(UserFactory(username="troll"), prompt, "Buy cheap watches!")
    review_of(UserFactory(), answer)
    follow_up = reply_to(UserFactory(), answer, "What?")
    return prompt, answer, follow_up
