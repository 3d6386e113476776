"""Build trees through the services, the way contributors would."""

from datetime import timedelta

from django.utils import timezone

from tasks import services
from tasks.models import Message, Task

GOOD_LABELS = {"spam": 0, "lang_mismatch": 0}
SPAM_LABELS = {"spam": 1, "lang_mismatch": 0}


def labels_for(task: Task, values: dict) -> dict:
    return {name: value for name, value in values.items() if name in task.payload["valid_labels"]}


def write_prompt(user, text="How do tides work?", lang="en") -> Message:
    task = services.task_request(user=user, task_type="initial_prompt", lang=lang)
    return services.text_submit(user=user, task_id=task.pk, text=text)


def review(user, task_type, values=GOOD_LABELS, lang="en"):
    task = services.task_request(user=user, task_type=task_type, lang=lang)
    return services.labels_submit(user=user, task_id=task.pk, labels=labels_for(task, values))


def reply(user, text, task_type="assistant_reply", lang="en") -> Message:
    task = services.task_request(user=user, task_type=task_type, lang=lang)
    return services.text_submit(user=user, task_id=task.pk, text=text)


def open_task(user, task_type, item, **payload) -> Task:
    """A task made directly (bypassing the queue) to test the submission guards."""
    return Task.objects.create(type=task_type, user=user, lang="en", item=item, tree=item.tree if item else None,
                               payload=payload, expires_at=timezone.now() + timedelta(days=1))


def reply_to(user, parent: Message, text: str) -> Message:
    """A reply to this very parent (the queue would pick any parent with a free slot)."""
    task_type = "assistant_reply" if parent.role == "prompter" else "prompter_reply"
    task = open_task(user, task_type, parent)
    return services.text_submit(user=user, task_id=task.pk, text=text)


def review_of(user, message: Message, values=GOOD_LABELS):
    """A review of this very message."""
    task_type = ("label_initial_prompt" if message.parent_id is None else
                 "label_assistant_reply" if message.role == "assistant" else "label_prompter_reply")
    task = open_task(user, task_type, message, valid_labels=["spam", "lang_mismatch", "quality"],
                     mandatory_labels=["spam"], mode="simple")
    return services.labels_submit(user=user, task_id=task.pk, labels=labels_for(task, values))


def growing_conversation(author, reviewer) -> tuple[Message, Message, Message]:
    """A growing tree with a reviewed prompt, assistant reply and prompter reply (author and reviewer
    take turns), for tests that need a conversation to work on."""
    prompt = write_prompt(author, text="How do tides work?")
    review_of(reviewer, prompt)
    services.lottery_activate(lang="en")
    assistant = reply_to(reviewer, prompt, "The moon pulls the oceans.")
    review_of(author, assistant)
    prompter = reply_to(author, assistant, "And the sun?")
    review_of(reviewer, prompter)
    return prompt, assistant, prompter


def prompt_in_ranking(writers) -> Message:
    """A prompt with two accepted assistant replies, its tree in `ranking` (three writers; the tree settings
    must ask one review per message and a goal size of 3)."""
    from tasks.models import MessageTree

    prompt = write_prompt(writers[0])
    review(writers[1], "label_initial_prompt")
    services.lottery_activate(lang="en")
    for writer in writers[1:]:
        reply(writer, f"Reply by {writer.username}")
    for _ in range(2):
        review(writers[0], "label_assistant_reply")
    assert MessageTree.objects.get(pk=prompt.tree_id).state == "ranking"
    return prompt
