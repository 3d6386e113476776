"""The world the authorisation matrix and the admin-lookup tests probe: one realistic community."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token

from tasks import services
from tasks.models import TaskType
from tests.factories import AdminFactory, UserFactory
from tests.tasks.builders import open_task, reply_to, review, write_prompt


@pytest.fixture
def researchers_group(db):
    """The researchers group as tasks/migrations/0004_export_permission makes it (transactional
    tests flush the migration's rows)."""
    group, _ = Group.objects.get_or_create(name="researchers")
    group.permissions.add(Permission.objects.get(content_type__app_label="tasks", codename="export_trees"))
    return group


@pytest.fixture
def world(db, small_trees, moderators_group, researchers_group):
    from allauth.account.forms import default_token_generator
    from allauth.account.models import EmailAddress, EmailConfirmationHMAC
    from allauth.account.utils import user_pk_to_url_str
    from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    from oasst.models import ModerationEvent
    from ranking.models import RankingResult
    from ranking.services import leaderboard_rebuild
    from tasks.models import FlaggedMessage
    from training.models import TrainingRun

    users = {
        "no_terms": UserFactory(username="newcomer", tos_accepted_at=None),
        "contributor": UserFactory(username="contributor"),
        "banned": UserFactory(username="banned", is_banned=True, ban_reason="spam"),
        "staff": UserFactory(username="staffer", is_staff=True),
        "moderator": UserFactory(username="moderator", is_staff=True),
        "researcher": UserFactory(username="researcher", is_staff=True),
        "superuser": AdminFactory(username="root"),
    }
    users["moderator"].groups.add(moderators_group)
    users["researcher"].groups.add(researchers_group)
    author, reviewer, other = (UserFactory(username=name) for name in ("author", "reviewer", "other"))

    prompt = write_prompt(author, text="How do tides work?")
    review(reviewer, "label_initial_prompt")
    services.lottery_activate(lang="en")
    answer = reply_to(other, prompt, "The moon pulls the sea toward it.")
    spam = reply_to(reviewer, prompt, "Cheap watches at spam.example")
    services.message_delete(actor=users["superuser"], message_id=spam.pk, reason="spam")
    others_task = open_task(author, TaskType.LABEL_ASSISTANT_REPLY, answer, valid_labels=["spam", "quality"],
                            mandatory_labels=["spam"], mode="simple")
    services.message_report(user=reviewer, message_id=answer.pk, reason="rude")
    for frame in ("week", "total"):
        leaderboard_rebuild(frame=frame)

    app = SocialApp.objects.create(provider="github", name="GitHub", client_id="id", secret="not-a-secret")
    social = SocialAccount.objects.create(user=other, provider="github", uid="42")
    interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    address = EmailAddress.objects.get(user=users["no_terms"])
    address.verified = False
    address.save()
    return SimpleNamespace(
        users=users, author=author, other=other, prompt=prompt, answer=answer, spam=spam, tree=prompt.tree,
        others_task=others_task, flag=FlaggedMessage.objects.get(message=answer),
        event=ModerationEvent.objects.first(),
        ranking_result=RankingResult.objects.create(parent=prompt, consensus=[str(answer.pk)], rankings=1),
        run=TrainingRun.objects.create(kind="reward_model", data_file="/nonexistent/trees.jsonl",
                                       output_dir="/nonexistent/run"),
        token=Token.objects.get_or_create(user=author)[0],
        site_id=1, app=app, social=social,
        social_token=SocialToken.objects.create(app=app, account=social, token="not-a-token"),
        interval=interval,
        periodic=PeriodicTask.objects.create(name="probe", task="tasks.expire_tasks", interval=interval),
        crontab=CrontabSchedule.objects.create(minute="30", hour="3"),
        solar=SolarSchedule.objects.create(event="sunrise", latitude=52.5, longitude=13.4),
        clocked=ClockedSchedule.objects.create(clocked_time=timezone.now()),
        address=address,
        confirm_key=EmailConfirmationHMAC(address).key,
        reset=f"{user_pk_to_url_str(author)}-{default_token_generator.make_token(author)}",
        message_type=ContentType.objects.get(app_label="tasks", model="message").pk,
    )
