# Drops the single-column indexes of Message.tree and Message.author: message_tree_depth_idx (tree, depth) and
# message_author_created_idx (author, created_at) lead with the same columns and serve every lookup they served,
# and each index more is one more random page written (and WAL-logged) per message insert (issue 19).
#
# Only the indexes go: Django's AlterField would drop and re-add the foreign keys too, and re-adding one
# validates every row of the table under a lock. DROP INDEX is quick on any size of table (no CONCURRENTLY:
# it holds its lock only while the catalog changes).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

COVERED = [("tasks_message_author_id_0f0cb09b", "author_id"), ("tasks_message_tree_id_88b2b24d", "tree_id")]


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0009_serving_scorer'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(f'DROP INDEX IF EXISTS "{name}"',
                                  reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "tasks_message" ("{column}")')
                for name, column in COVERED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='message',
                    name='author',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='messages', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='message',
                    name='tree',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='tasks.messagetree'),
                ),
            ],
        ),
    ]
