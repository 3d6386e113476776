"""The moderators group: staff who may moderate content and users in the admin."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MODERATOR_PERMISSIONS = {
    ("tasks", "message"): ["view", "change", "moderate_message"],
    ("tasks", "messagetree"): ["view", "change", "moderate_tree"],
    ("tasks", "flaggedmessage"): ["view", "change"],
    ("tasks", "review"): ["view"],
    ("tasks", "task"): ["view"],
    ("tasks", "emojireaction"): ["view"],
    ("tasks", "messagerevision"): ["view"],
    ("ranking", "ranking"): ["view"],
    ("ranking", "rankingresult"): ["view"],
    ("ranking", "leaderboardentry"): ["view_trollboard"],
    ("oasst", "user"): ["view", "change", "moderate_user"],
    ("oasst", "moderationevent"): ["view"],
}


def codename(action: str, model: str) -> str:
    return f"{action}_{model}" if action in ("view", "change", "add", "delete") else action


def create_moderators(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions are otherwise created only after all migrations
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="moderators")
    for (app_label, model), actions in MODERATOR_PERMISSIONS.items():
        for action in actions:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                        content_type__model=model,
                                                        codename=codename(action, model)))


def remove_moderators(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="moderators").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("oasst", "0002_moderation"),
        ("tasks", "0002_moderation"),
        ("ranking", "0002_scores_leaderboard"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_moderators, remove_moderators)]
