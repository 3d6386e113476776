"""One report per user and message (issue 16, defect 8). The reporters the database already knows,
the red flags and the reviews ticked "report", become one report each, merged per user and message;
earlier reports from the report box kept no reporter, so they stay counted as they were."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def reports_from_red_flags_and_reviews(apps, schema_editor):
    EmojiReaction = apps.get_model("tasks", "EmojiReaction")
    Review = apps.get_model("tasks", "Review")
    MessageReport = apps.get_model("tasks", "MessageReport")
    reports = {}
    for message_id, user_id in EmojiReaction.objects.filter(emoji="red_flag").values_list("message_id", "user_id"):
        reports[(message_id, user_id)] = ""
    for message_id, user_id, text in Review.objects.filter(report=True, user__isnull=False).values_list("message_id", "user_id", "text"):
        reports[(message_id, user_id)] = reports.get((message_id, user_id)) or text.strip()[:512]
    MessageReport.objects.bulk_create(
        [MessageReport(message_id=message_id, user_id=user_id, reason=reason)
         for (message_id, user_id), reason in reports.items()], batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0006_task_open_once_per_user_item'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='MessageReport',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason', models.CharField(blank=True, help_text="Empty for a red flag or a review's tick.", max_length=512)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('message', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='user_reports', to='tasks.message')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='message_reports', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('message', 'user'), name='report_once_per_user')],
            },
        ),
        migrations.RunPython(reports_from_red_flags_and_reviews, migrations.RunPython.noop),
    ]
