"""The Messages pages: browse and search, the conversation tree, emoji reactions and reports."""

import pytest
from django.db import connection
from django.urls import reverse

from tasks import services
from tasks.models import EmojiReaction, FlaggedMessage, Message, MessageTree, TreeState
from tests.factories import UserFactory
from tests.tasks.builders import reply, review, write_prompt

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
# session + user + the page's one query; the tree page adds the reader's own reactions
LIST_QUERIES = 3
TREE_QUERIES = 4
# session + user, emoji_set's savepoint, tree lock, message, 4 reaction statements, save, release,
# then the message and the reader's reactions for the bar
EMOJI_QUERIES = 14


def build_tree(people, capture, *, prompt_text="How do tides work?"):
    """A ranked tree: prompt -> two assistant answers (the second ranked best) -> a follow-up on the first.
    Each step has exactly one candidate item, so the queue's random choice cannot change the shape."""
    with capture(execute=True):
        prompt = write_prompt(people[0], text=prompt_text)
        review(people[1], "label_initial_prompt")
        first = reply(people[2], "The **moon** pulls the oceans toward it.")
        review(people[4], "label_assistant_reply")
        follow_up = reply(people[5], "Why are there two tides a day?", task_type="prompter_reply")
        review(people[1], "label_prompter_reply")
        second = reply(people[3], "The gravity of the moon and the sun.")  # the follow-up is at the depth limit
        review(people[4], "label_assistant_reply")
        task = services.task_request(user=people[4], task_type="rank_assistant_replies", lang="en")
        services.ranking_submit(user=people[4], task_id=task.pk, ranking=[str(second.pk), str(first.pk)])
    return {name: Message.objects.get(pk=m.pk) for name, m in
            {"prompt": prompt, "first": first, "second": second, "follow_up": follow_up}.items()}


@pytest.fixture
def people(tree_settings):
    tree_settings(goal_tree_size=4, max_tree_depth=2, num_reviews_reply=1, num_reviews_initial_prompt=1,
                  num_required_rankings=1)
    return [UserFactory() for _ in range(7)]


@pytest.fixture
def tree(people, django_capture_on_commit_callbacks):
    return build_tree(people, django_capture_on_commit_callbacks)


@pytest.fixture
def reader(client, people):
    client.force_login(people[6])
    return client


def listed(response) -> list[str]:
    return [str(m.pk) for m in response.context["results"]]


def test_the_tree_was_built_ranked_and_ready(tree):
    assert MessageTree.objects.get().state == TreeState.READY_FOR_EXPORT
    assert tree["follow_up"].parent_id == tree["first"].pk and tree["second"].parent_id == tree["prompt"].pk
    assert (tree["second"].rank, tree["first"].rank) == (0, 1)


def test_messages_pages_need_a_login(client, tree):
    for url in (reverse("messages"), reverse("message-tree", args=[tree["prompt"].pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_list_shows_newest_first_and_links_to_the_tree(reader, tree):
    response = reader.get(reverse("messages"))
    assert response.status_code == 200
    assert listed(response) == [str(tree[name].pk) for name in ("second", "follow_up", "first", "prompt")]
    assert reverse("message-tree", args=[tree["first"].pk]) in response.content.decode()


def test_filters_by_language_role_and_review_state(reader, people, tree):
    german = write_prompt(people[6], text="Wie entstehen Gezeiten?", lang="de")
    url = reverse("messages")
    assert listed(reader.get(url, {"lang": "de"})) == [str(german.pk)]
    assert set(listed(reader.get(url, {"role": "assistant"}))) == {str(tree["first"].pk), str(tree["second"].pk)}
    assert set(listed(reader.get(url, {"role": "prompter", "lang": "en"}))) == {
        str(tree["prompt"].pk), str(tree["follow_up"].pk)}
    assert listed(reader.get(url, {"review": "undecided"})) == [str(german.pk)]
    assert len(listed(reader.get(url, {"review": "accepted"}))) == 4
    assert listed(reader.get(url, {"review": "rejected"})) == []


def test_unknown_filter_values_are_ignored(reader, tree):
    response = reader.get(reverse("messages"), {"lang": "xx", "role": "robot", "review": "maybe", "page": "zero"})
    assert response.status_code == 200 and len(listed(response)) == 4


def test_search_finds_words_on_either_database(reader, tree):
    response = reader.get(reverse("messages"), {"q": "moon"})
    assert set(listed(response)) == {str(tree["first"].pk), str(tree["second"].pk)}
    assert listed(reader.get(reverse("messages"), {"q": "TIDES"})) == [str(tree["follow_up"].pk),
                                                                       str(tree["prompt"].pk)]
    assert "No messages match" in reader.get(reverse("messages"), {"q": "volcano"}).content.decode()


@pytest.mark.postgres
def test_postgres_search_is_full_text_words_in_any_order(reader, tree):
    assert connection.vendor == "postgresql"
    assert listed(reader.get(reverse("messages"), {"q": "oceans moon"})) == [str(tree["first"].pk)]
    assert listed(reader.get(reverse("messages"), {"q": "moon -oceans"})) == [str(tree["second"].pk)]
    assert listed(reader.get(reverse("messages"), {"q": "ocean"})) == []  # 'simple': no stemming


def test_sqlite_search_is_a_plain_contains(reader, tree):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert listed(reader.get(reverse("messages"), {"q": "ocean"})) == [str(tree["first"].pk)]
    assert listed(reader.get(reverse("messages"), {"q": "oceans moon"})) == []


def test_pages_come_from_one_extra_row_not_a_count(reader, people, tree, settings, monkeypatch):
    monkeypatch.setattr("tasks.browse.PAGE_SIZE", 3)
    first_page = reader.get(reverse("messages"))
    assert len(listed(first_page)) == 3 and first_page.context["has_next"]
    assert 'rel="next"' in first_page.content.decode()
    second_page = reader.get(reverse("messages"), {"page": 2})
    assert listed(second_page) == [str(tree["prompt"].pk)] and not second_page.context["has_next"]
    assert 'rel="prev"' in second_page.content.decode()


def test_htmx_search_answers_with_the_results_fragment_only(reader, tree):
    response = reader.get(reverse("messages"), {"q": "moon"}, **HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="results"') and "<html" not in body
    assert "HX-Request" in response["Vary"]


def test_list_queries_do_not_grow_with_the_number_of_messages(reader, people, tree, django_assert_num_queries):
    with django_assert_num_queries(LIST_QUERIES):
        reader.get(reverse("messages"), {"q": "moon", "lang": "en", "role": "assistant", "review": "accepted"})
    for i in range(12):
        write_prompt(UserFactory(), text=f"Does the moon cause question {i}?")
    with django_assert_num_queries(LIST_QUERIES):
        assert len(listed(reader.get(reverse("messages"), {"q": "moon"}))) == 14


def test_tree_shows_every_message_with_ranks_review_state_and_the_selected_one(reader, tree):
    response = reader.get(reverse("message-tree", args=[tree["follow_up"].pk]))
    body = response.content.decode()
    assert response.status_code == 200
    for message in tree.values():
        assert f'id="m-{message.pk}"' in body
    assert f'id="m-{tree["follow_up"].pk}" class="msg bubble prompter selected"' in body
    assert body.count(' selected"') == 1 and body.count('aria-current="true"') == 1
    assert "rank 1" in body and "rank 2" in body and "accepted" in body
    assert "<strong>moon</strong>" in body
    assert body.index(str(tree["second"].pk)) < body.index(str(tree["first"].pk))  # best rank first
    assert body.count("<details class=\"branch\" open>") == 2
    assert f'action="{reverse("message-report", args=[tree["first"].pk])}"' in body


def test_user_text_is_shown_as_text_never_as_html(reader, people, django_capture_on_commit_callbacks):
    evil = "<script>alert(1)</script> <img src=x onerror=alert(1)>"
    message = build_tree(people, django_capture_on_commit_callbacks, prompt_text=evil)["prompt"]
    for response in (reader.get(reverse("message-tree", args=[message.pk])), reader.get(reverse("messages"))):
        body = response.content.decode()
        assert "<script>alert" not in body and "<img src=x" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_deleted_messages_and_their_subtrees_are_hidden(reader, people, tree, tree_settings):
    tree_settings(auto_mod_red_flags=1)
    services.emoji_set(user=people[6], message_id=tree["first"].pk, emoji="red_flag", op="add")
    assert Message.objects.get(pk=tree["follow_up"].pk).deleted
    assert set(listed(reader.get(reverse("messages")))) == {str(tree["prompt"].pk), str(tree["second"].pk)}
    body = reader.get(reverse("message-tree", args=[tree["prompt"].pk])).content.decode()
    assert str(tree["second"].pk) in body
    assert str(tree["first"].pk) not in body and str(tree["follow_up"].pk) not in body
    assert "pulls the oceans" not in body and "two tides" not in body
    for hidden in ("first", "follow_up"):
        assert reader.get(reverse("message-tree", args=[tree[hidden].pk])).status_code == 404


def test_unknown_message_is_not_found(reader, tree):
    assert reader.get(reverse("message-tree", args=["00000000-0000-0000-0000-000000000000"])).status_code == 404


def test_tree_queries_are_fixed(reader, people, tree, django_assert_num_queries):
    services.emoji_set(user=people[6], message_id=tree["first"].pk, emoji="heart_eyes", op="add")
    with django_assert_num_queries(TREE_QUERIES):
        response = reader.get(reverse("message-tree", args=[tree["prompt"].pk]))
    assert 'data-emoji="heart_eyes"' in response.content.decode()


def emoji(client, message, code, op="add", **extra):
    return client.post(reverse("message-emoji", args=[message.pk]), {f"{op}_emoji": code}, **extra)


def my_reactions(user, message) -> set[str]:
    return set(EmojiReaction.objects.filter(user=user, message=message).values_list("emoji", flat=True))


def test_plus_one_and_minus_one_exclude_each_other_through_the_view(reader, people, tree):
    answer = tree["first"]
    response = emoji(reader, answer, "+1", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<form class="reactions"')
    assert 'class="emoji pressed" data-emoji="+1"' in body and 'name="remove_emoji" value="+1"' in body
    assert my_reactions(people[6], answer) == {"+1"}
    body = emoji(reader, answer, "-1", **HTMX).content.decode()
    assert my_reactions(people[6], answer) == {"-1"}
    assert 'class="emoji" data-emoji="+1"' in body and 'class="emoji pressed" data-emoji="-1"' in body
    assert Message.objects.get(pk=answer.pk).emojis == {"-1": 1}
    emoji(reader, answer, "-1", op="remove", **HTMX)
    assert my_reactions(people[6], answer) == set() and Message.objects.get(pk=answer.pk).emojis == {}


def test_reaction_queries_are_fixed(reader, people, tree, django_assert_num_queries):
    services.emoji_set(user=people[1], message_id=tree["first"].pk, emoji="clap", op="add")
    with django_assert_num_queries(EMOJI_QUERIES):
        assert emoji(reader, tree["first"], "+1", **HTMX).status_code == 200


def test_counts_from_other_users_show_on_the_buttons(reader, people, tree):
    services.emoji_set(user=people[1], message_id=tree["first"].pk, emoji="+1", op="add")
    body = emoji(reader, tree["first"], "+1", **HTMX).content.decode()
    assert '<span class="count">2</span>' in body and 'aria-label="Thumbs up (2)"' in body


def test_reaction_to_own_message_is_refused_and_the_reason_shown(client, people, tree):
    client.force_login(people[2])  # the author of the first answer
    response = emoji(client, tree["first"], "+1", **HTMX)
    assert response.status_code == 403
    body = response.content.decode()
    assert "You cannot react to your own message." in body and 'role="alert"' in body
    assert 'data-reactions-for="' in body and " disabled" in body
    assert not EmojiReaction.objects.exists()
    tree_page = client.get(reverse("message-tree", args=[tree["first"].pk])).content.decode()
    assert "Your message: others react to it." in tree_page


def test_without_htmx_a_reaction_redirects_back_with_the_reason(client, people, tree):
    client.force_login(people[2])
    response = emoji(client, tree["first"], "+1", follow=True)
    assert response.redirect_chain[-1][0] == f"{reverse('message-tree', args=[tree['first'].pk])}#m-{tree['first'].pk}"
    assert "You cannot react to your own message." in response.content.decode()
    client.force_login(people[6])
    emoji(client, tree["first"], "clap")
    assert my_reactions(people[6], tree["first"]) == {"clap"}


@pytest.mark.parametrize("data, status", [({"add_emoji": "fire"}, 400), ({"toggle": "+1"}, 400)])
def test_unknown_emoji_or_missing_op_is_refused(reader, tree, data, status):
    response = reader.post(reverse("message-emoji", args=[tree["first"].pk]), data, **HTMX)
    assert response.status_code == status and 'role="alert"' in response.content.decode()
    assert not EmojiReaction.objects.exists()


def test_reaction_to_a_deleted_message_is_not_found(reader, people, tree, tree_settings):
    tree_settings(auto_mod_red_flags=1)
    services.emoji_set(user=people[1], message_id=tree["first"].pk, emoji="red_flag", op="add")
    response = emoji(reader, tree["first"], "+1", **HTMX)
    missing = reader.post(reverse("message-emoji", args=["00000000-0000-0000-0000-000000000000"]), {"add_emoji": "+1"},
                          **HTMX)
    # A deleted message answers as an unknown id: no counts, nothing that tells it exists (issue 21).
    answer = (response.status_code, response.content)
    assert answer == (missing.status_code, missing.content) == (404, b"No such message.")


def test_reaction_needs_a_post_and_a_login(client, tree):
    url = reverse("message-emoji", args=[tree["first"].pk])
    assert client.post(url, {"add_emoji": "+1"}).status_code == 302
    client.force_login(UserFactory())
    assert client.get(url).status_code == 405


def test_report_button_posts_to_the_existing_report_view(reader, tree):
    response = reader.post(reverse("message-report", args=[tree["second"].pk]), {"reason": "made up facts"}, **HTMX)
    assert response.status_code == 200 and "Reported" in response.content.decode()
    assert FlaggedMessage.objects.get().reasons == ["made up facts"]
