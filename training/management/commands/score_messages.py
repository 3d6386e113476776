"""manage.py score_messages: score assistant replies with a trained reward model and store the score on each."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tasks.models import Message, MessageTree, Role, TreeState
from tasks.services import message_reward_scores_set
from training.data import Turn
from training.reward import load_reward_model, score_replies

SCORING_CHUNK = 1000  # replies scored and stored together; trees are gathered until a chunk is full


def replies_with_conversations(messages: list[Message]) -> list[tuple[Message, tuple[Turn, ...]]]:
    """Each live assistant reply with the conversation above it, root first, as at training time."""
    by_id = {message.pk: message for message in messages}
    items = []
    for message in messages:
        if message.role != Role.ASSISTANT or message.deleted or message.parent_id not in by_id:
            continue
        turns, parent = [], by_id.get(message.parent_id)
        while parent is not None:
            turns.append(Turn(parent.role, parent.text))
            parent = by_id.get(parent.parent_id)
        items.append((message, tuple(reversed(turns))))
    return items


class Command(BaseCommand):
    help = "Score assistant replies with a trained reward model and store the score on each message."

    def add_arguments(self, parser):
        parser.add_argument("--reward-model", required=True, help="folder written by train_reward_model")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--tree", help="score one message tree (its id)")
        scope.add_argument("--state", choices=TreeState.values, help="score the trees in this state")
        parser.add_argument("--batch-size", type=int, default=32)

    def handle(self, *args, **options):
        folder = Path(options["reward_model"])
        if not (folder / "reward_model.json").is_file():
            raise CommandError(f"no reward model at {folder} (expected the folder train_reward_model writes)")
        trees = MessageTree.objects.all()
        if options["tree"]:
            try:
                trees = trees.filter(pk=options["tree"])
                if not trees.exists():
                    raise CommandError(f"no message tree {options['tree']}")
            except ValidationError as error:
                raise CommandError(f"not a tree id: {options['tree']}") from error
        elif options["state"]:
            trees = trees.filter(state=options["state"])
        model, tokenizer, reading = load_reward_model(folder)
        stored, pending = 0, []

        def score_pending() -> int:
            scores = score_replies(
                model,
                tokenizer,
                [(conversation, message.text) for message, conversation in pending],
                reading=reading,
                batch_size=options["batch_size"],
            )
            return message_reward_scores_set(
                scores={message.pk: score for (message, _), score in zip(pending, scores, strict=True)}
            )

        for tree_id in trees.values_list("pk", flat=True).iterator():
            messages = list(Message.objects.filter(tree_id=tree_id).only("pk", "parent_id", "role", "text", "deleted"))
            pending += replies_with_conversations(messages)
            if len(pending) >= SCORING_CHUNK:  # many trees at once: score_replies sorts them by length
                stored += score_pending()
                pending = []
        if pending:
            stored += score_pending()
        self.stdout.write(self.style.SUCCESS(f"scored {stored} replies"))
