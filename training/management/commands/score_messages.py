"""manage.py score_messages: score assistant replies with a trained reward model and store the score on each."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tasks.models import Message, MessageTree, TreeState
from tasks.services import message_reward_scores_set
from training.dependencies import check_training_dependencies
from training.reward import load_reward_model, score_replies
from training.selectors import training_run_of_folder
from training.serving import replies_with_conversations

SCORING_CHUNK = 1000  # replies scored and stored together; trees are gathered until a chunk is full


class Command(BaseCommand):
    help = "Score assistant replies with a trained reward model and store the score on each message."

    def add_arguments(self, parser):
        parser.add_argument("--reward-model", required=True, help="folder written by train_reward_model")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--tree", help="score one message tree (its id)")
        scope.add_argument("--state", choices=TreeState.values, help="score the trees in this state")
        parser.add_argument("--batch-size", type=int, default=32)

    def handle(self, *args, **options):
        check_training_dependencies(CommandError)
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
        run = training_run_of_folder(str(folder))  # the scores name the run that wrote the model, when one did
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
                scores={message.pk: score for (message, _), score in zip(pending, scores, strict=True)},
                run_id=run.pk if run else None,
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
