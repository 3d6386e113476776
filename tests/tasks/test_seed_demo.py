"""seed_demo: a demo admin and a demo community with trees in every state, built through the
services, once; refused when DEBUG is off unless --force."""

import io

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import transaction

from ranking.models import Ranking
from tasks import services
from tasks.management.commands.seed_demo import DEMO_USERS
from tasks.models import EmojiReaction, FlaggedMessage, Message, MessageTree, Review, Task, TreeState

DEMO_STATES = {
    TreeState.INITIAL_PROMPT_REVIEW, TreeState.PROMPT_LOTTERY_WAITING, TreeState.GROWING, TreeState.RANKING,
    TreeState.READY_FOR_EXPORT, TreeState.ABORTED_LOW_GRADE, TreeState.HALTED_BY_MODERATOR,
}


def seed(**options) -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    models = (get_user_model(), EmailAddress, MessageTree, Message, Review, Ranking, EmojiReaction, FlaggedMessage,
              Task)
    return {model.__name__: model.objects.count() for model in models}


def counters(tree: MessageTree) -> tuple:
    messages = tree.messages.order_by("pk").values_list("pk", "children_count", "reviews_pending",
                                                        "rankings_pending", "replies_pending")
    return (tree.message_count, tree.accepted_count, tree.awaiting_review, tree.replies_pending, list(messages))


@pytest.mark.django_db
def test_seed_demo_creates_the_admin_once(settings):
    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")
    assert get_user_model().objects.filter(username="admin").count() == 1


@pytest.mark.django_db
def test_seed_demo_creates_a_moderator_who_can_moderate_but_not_administer(settings, client, moderators_group):
    settings.DEBUG = True
    output = seed()
    seed()
    moderator = get_user_model().objects.get(username="moderator")
    assert moderator.check_password("moderator") and moderator.is_staff and not moderator.is_superuser
    assert list(moderator.groups.values_list("name", flat=True)) == ["moderators"]
    assert EmailAddress.objects.filter(user=moderator, verified=True).exists() and moderator.has_accepted_tos
    assert "moderator / moderator" in output
    client.force_login(moderator)
    assert client.get("/admin/tasks/flaggedmessage/", follow=True).status_code == 200
    assert client.get("/admin/auth/group/").status_code == 403


@pytest.mark.django_db
def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")
    assert not get_user_model().objects.exists()


@pytest.mark.django_db(transaction=True)
def test_seed_demo_creates_contributors_who_can_log_in(settings):
    settings.DEBUG = True
    output = seed()
    usernames = [username for username, *_ in DEMO_USERS]
    users = get_user_model().objects.filter(username__in=usernames)
    assert users.count() == len(DEMO_USERS) == 12
    for user in users:
        assert user.check_password("demo") and user.has_accepted_tos and user.display_name
        assert EmailAddress.objects.filter(user=user, email=user.email, verified=True, primary=True).exists()
    assert {user.preferred_language for user in users} == {"en", "de"}
    assert "'demo'" in output and all(username in output for username in usernames)


@pytest.mark.django_db(transaction=True)
def test_seed_demo_builds_trees_in_every_state_with_consistent_counters(settings):
    settings.DEBUG = True
    seed()
    trees = MessageTree.objects.all()
    assert DEMO_STATES <= set(trees.values_list("state", flat=True))
    assert {"en", "de"} <= set(trees.values_list("lang", flat=True))
    aborted = trees.get(state=TreeState.ABORTED_LOW_GRADE)
    assert aborted.messages.get(parent=None).review_result is False
    assert trees.get(state=TreeState.HALTED_BY_MODERATOR).halted_from_state == TreeState.GROWING
    growing = trees.filter(state=TreeState.GROWING)
    assert any(tree.awaiting_review for tree in growing)
    for tree in trees:
        before = counters(tree)
        with transaction.atomic():
            services.tree_counters_recompute(services.tree_locked(tree.pk))
            tree.refresh_from_db()
            after = counters(tree)
            transaction.set_rollback(True)
        assert before == after, f"counters of {tree.state} tree {tree.pk} differ from a recount"
    assert not Task.objects.filter(done=False, skipped=False, expired=False).exists()


@pytest.mark.django_db(transaction=True)
def test_seed_demo_scores_finished_trees_and_leaves_one_ranking_tree_part_ranked(settings):
    settings.DEBUG = True
    seed()
    for tree in MessageTree.objects.filter(state=TreeState.READY_FOR_EXPORT):
        parents = Message.objects.filter(tree=tree, ranking_count__gt=0)
        assert parents.exists()
        for parent in parents:
            ranked = parent.children.filter(review_result=True).order_by("rank")
            assert [reply.rank for reply in ranked] == list(range(ranked.count()))
            assert Ranking.objects.filter(parent=parent).count() == 3
        assert not Message.objects.filter(tree=tree, review_result=False, rank__isnull=False).exists()
    ranking = MessageTree.objects.filter(state=TreeState.RANKING)
    assert Ranking.objects.filter(parent__tree__in=ranking).count() >= 1
    assert not Message.objects.filter(tree__in=ranking, rank__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_seed_demo_adds_reactions_reports_and_skipped_tasks(settings):
    settings.DEBUG = True
    seed()
    assert {"+1", "-1", "heart_eyes", "red_flag"} <= set(EmojiReaction.objects.values_list("emoji", flat=True))
    for message in Message.objects.exclude(emojis={}):
        assert sum(message.emojis.values()) == message.reactions.count()
    rejected_reply = Message.objects.get(parent__isnull=False, review_result=False)
    assert rejected_reply.red_flags >= 1
    assert FlaggedMessage.objects.filter(message=rejected_reply, processed=False, reports__gte=2).exists()
    spam_prompt = Message.objects.get(tree__state=TreeState.ABORTED_LOW_GRADE)
    assert spam_prompt.reviews.filter(report=True).exists() and spam_prompt.flag.reports >= 1
    skipped = Task.objects.filter(skipped=True)
    assert skipped.count() >= 3 and all(task.skip_reason for task in skipped)
    assert MessageTree.objects.get(state=TreeState.HALTED_BY_MODERATOR).reply_skip_count >= 1


@pytest.mark.django_db(transaction=True)
def test_seed_demo_second_run_adds_nothing(settings):
    settings.DEBUG = False
    seed(force=True)
    first = row_counts()
    output = seed(force=True)
    assert row_counts() == first
    assert "nothing added" in output


@pytest.mark.django_db(transaction=True)
def test_seed_demo_builds_the_same_community_every_time(settings):
    settings.DEBUG = True

    def fingerprint():
        return [(m.tree.state, m.author.username, m.text, m.review_result, m.rank, m.emojis,
                 sorted(m.reviews.values_list("user__username", flat=True)))
                for m in Message.objects.select_related("tree", "author").order_by("text")]

    seed()
    first = fingerprint()
    MessageTree.objects.all().delete()
    get_user_model().objects.all().delete()
    seed()
    assert fingerprint() == first


@pytest.mark.django_db(transaction=True)
def test_seed_demo_fills_the_leaderboard(settings):
    from ranking.models import LeaderboardEntry

    settings.DEBUG = True
    call_command("seed_demo")
    assert LeaderboardEntry.objects.filter(frame="total").count() >= 10
    assert LeaderboardEntry.objects.filter(frame="day").exists()
