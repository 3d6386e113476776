"""Every review label and every task type a contributor can get carries its guidance."""

from tasks.guidance import GUIDELINES, LABEL_GUIDE, task_guidelines
from tasks.models import TaskType
from tasks.tree_manager import ALL_LABELS
from tasks.views import TASK_TITLES


def test_every_review_label_has_a_meaning_and_an_example():
    assert set(LABEL_GUIDE) == set(ALL_LABELS)
    assert all(meaning and example for meaning, example in LABEL_GUIDE.values())


def test_each_task_type_gets_its_own_guidelines_and_the_reviews_share_one():
    writing_and_ranking = [t for t in TASK_TITLES if not t.startswith("label_")]
    assert {t: task_guidelines(t) for t in writing_and_ranking} == {t: GUIDELINES[t] for t in writing_and_ranking}
    assert task_guidelines(TaskType.LABEL_ASSISTANT_REPLY) is GUIDELINES["review"]
    for guide in GUIDELINES.values():
        assert guide["dos"] and guide["donts"] and all(guide["good"]) and all(guide["bad"])
