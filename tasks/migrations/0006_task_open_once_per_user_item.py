"""One open task per user and item. Concurrent requests from one user could hold an item twice
(issue 21, finding 4): the later duplicates are expired first, and the slots they held released,
as the expiry job would."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import F, Q
from django.db.models.functions import Greatest

OPEN = Q(done=False, skipped=False, expired=False)


def expire_duplicate_open_tasks(apps, schema_editor):
    Task = apps.get_model("tasks", "Task")
    Message = apps.get_model("tasks", "Message")
    MessageTree = apps.get_model("tasks", "MessageTree")
    seen = set()
    for task in Task.objects.filter(OPEN, item__isnull=False).order_by("created_at", "pk").iterator():
        if (task.user_id, task.item_id) not in seen:
            seen.add((task.user_id, task.item_id))
            continue
        Task.objects.filter(pk=task.pk).update(expired=True)
        kind = task.type.split("_", 1)[0]
        if kind in ("label", "rank"):
            pending = "reviews_pending" if kind == "label" else "rankings_pending"
            Message.objects.filter(pk=task.item_id).update(**{pending: Greatest(F(pending) - 1, 0)})
        else:  # assistant_reply, prompter_reply
            Message.objects.filter(pk=task.item_id).update(replies_pending=Greatest(F("replies_pending") - 1, 0))
            MessageTree.objects.filter(pk=task.tree_id).update(replies_pending=Greatest(F("replies_pending") - 1, 0))


class Migration(migrations.Migration):

    dependencies = [
        ("tasks", "0005_message_reward_score"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(expire_duplicate_open_tasks, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="task",
            constraint=models.UniqueConstraint(
                condition=models.Q(("done", False), ("expired", False), ("item__isnull", False), ("skipped", False)),
                fields=("user", "item"), name="task_open_once_per_user_item"),
        ),
    ]
