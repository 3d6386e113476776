"""Imports that merge: a newer snapshot of trees the database holds adds the messages it lacks (with
their labels, emojis, ranks, dates and authors), reports fields that differ and keeps them unless
told otherwise, refuses a tree it cannot attach, and stays idempotent; new trees go in batches."""

import copy
from pathlib import Path

import pytest
from django.core.management import CommandError
from django.db import IntegrityError, connection

from tasks import import_write, services
from tasks.import_plan import TreeRefused, merge_plan
from tasks.importer import import_file
from tasks.models import Message, MessageRevision, MessageTree
from tests.tasks.test_export_import import (
    TREES_FILE,
    export,
    import_,
    needs_data,
    normalized_trees,
    read_lines,
    walk,
    write_lines,
)

pytestmark = pytest.mark.django_db


def uid(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


def node(number: int, text: str, role: str, *replies: dict, **fields) -> dict:
    return {"message_id": uid(number), "text": text, "role": role, "lang": "en", "review_count": 3,
            "review_result": True, **fields, "replies": list(replies)}


def tree(prompt: dict) -> dict:
    return {"message_tree_id": prompt["message_id"], "tree_state": "ready_for_export", "prompt": prompt}


def newer_snapshot() -> list[dict]:
    """Three trees as a later export has them; `older_snapshot` lacks some of their messages."""
    first = tree(node(
        1, "How do tides work?", "prompter",
        node(2, "The moon pulls the oceans.", "assistant",
             node(4, "Why two a day?", "prompter",
                  node(5, "Inertia makes a second bulge.", "assistant", rank=0, user_id="ann",
                       created_date="2023-03-01T12:00:00+00:00", emojis={"+1": 4, "red_flag": 1},
                       labels={"quality": {"value": 0.75, "count": 4}})),
             rank=0),
        node(3, "Tides are magic.", "assistant", rank=1, emojis={"-1": 2}),
        user_id="bob", created_date="2023-02-05T10:00:00+00:00", labels={"spam": {"value": 0.0, "count": 3}}))
    second = tree(node(10, "Name a planet.", "prompter", node(11, "Mars.", "assistant", rank=0)))
    third = tree(node(20, "What is a monad?", "prompter", node(21, "A monoid in endofunctors.", "assistant")))
    return [first, second, third]


def older_snapshot() -> list[dict]:
    """The first tree without message 3 and the subtree at 4; the second tree missing; the third as is."""
    first, _, third = copy.deepcopy(newer_snapshot())
    first["prompt"]["replies"] = first["prompt"]["replies"][:1]
    first["prompt"]["replies"][0]["replies"] = []
    return [first, third]


def snapshot_file(tmp_path: Path, trees: list[dict], name: str) -> Path:
    return write_lines(tmp_path / name, trees)


def counters(tree_id) -> tuple:
    tree = MessageTree.objects.get(pk=tree_id)
    return ([tree.message_count, tree.accepted_count, tree.awaiting_review, tree.replies_pending],
            dict(tree.messages.values_list("id", "children_count")))


def assert_counters_equal_a_recompute(tree_ids) -> None:
    for tree_id in tree_ids:
        before = counters(tree_id)
        services.tree_counters_recompute(MessageTree.objects.get(pk=tree_id))
        assert counters(tree_id) == before


def flat_rows(item: dict) -> list[dict]:
    """A tree as flat message rows (message file format), each with its parent and tree ids."""
    rows, stack = [], [(item["prompt"], None)]
    while stack:
        message, parent_id = stack.pop()
        rows.append({**{key: value for key, value in message.items() if key != "replies"}, "parent_id": parent_id,
                     "message_tree_id": item["message_tree_id"]})
        stack.extend((reply, message["message_id"]) for reply in message["replies"])
    return rows


def all_ids(trees: list[dict]) -> set[str]:
    return {message["message_id"] for item in trees for message in walk(item["prompt"])}


def test_newer_snapshot_adds_exactly_the_missing_messages_with_their_fields(tmp_path):
    import_file(path=snapshot_file(tmp_path, older_snapshot(), "old.jsonl"))
    assert Message.objects.count() == 4

    report = import_file(path=snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"))

    assert report.trees_merged == {uid(1): [uid(3), uid(4), uid(5)]}
    assert report.trees_created == 1 and report.trees_skipped == [uid(20)]
    assert report.messages_created == 5 and report.changes == [] and not report.trees_refused
    assert {str(pk) for pk in Message.objects.values_list("pk", flat=True)} == all_ids(newer_snapshot())
    added = Message.objects.get(pk=uid(5))
    assert (str(added.parent_id), str(added.tree_id), added.depth) == (uid(4), uid(1), 3)
    assert added.rank == 0 and added.emojis == {"+1": 4, "red_flag": 1} and added.red_flags == 1
    assert added.labels == {"quality": {"value": 0.75, "count": 4}}
    assert added.created_at.isoformat() == "2023-03-01T12:00:00+00:00"
    assert added.author.username == "imported-ann" and not added.author.is_active
    assert Message.objects.get(pk=uid(3)).rank == 1
    tree = MessageTree.objects.get(pk=uid(1))
    assert tree.message_count == 5 and Message.objects.get(pk=uid(1)).children_count == 2
    assert_counters_equal_a_recompute([uid(1), uid(10), uid(20)])


def test_second_import_of_the_newer_snapshot_adds_and_reports_nothing(tmp_path):
    newer = snapshot_file(tmp_path, newer_snapshot(), "new.jsonl")
    import_file(path=newer)
    rows = sorted(Message.objects.values_list("pk", "text", "rank", "emojis", "labels", "created_at", "children_count"))

    again = import_file(path=newer)

    assert (again.trees_created, again.messages_created, again.trees_merged, again.changes) == (0, 0, {}, [])
    assert sorted(again.trees_skipped) == [uid(1), uid(10), uid(20)] and again.users_created == 0
    assert sorted(Message.objects.values_list("pk", "text", "rank", "emojis", "labels", "created_at",
                                              "children_count")) == rows


def changed_snapshot() -> list[dict]:
    """The newer snapshot where message 2's text and rank and message 3's review changed."""
    trees = newer_snapshot()
    first_reply, second_reply = trees[0]["prompt"]["replies"]
    first_reply["text"], first_reply["rank"] = "The moon and the sun pull the oceans.", 1
    second_reply["review_result"] = False
    return trees


def test_changed_fields_are_reported_and_kept(tmp_path):
    import_file(path=snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"))

    report = import_file(path=snapshot_file(tmp_path, changed_snapshot(), "changed.jsonl"))

    assert {(c.tree_id, c.message_id, c.field, c.db, c.file, c.applied) for c in report.changes} == {
        (uid(1), uid(2), "text", "The moon pulls the oceans.", "The moon and the sun pull the oceans.", False),
        (uid(1), uid(2), "rank", 0, 1, False),
        (uid(1), uid(3), "review_result", True, False, False)}
    assert report.trees_changed == [uid(1)] and report.messages_created == 0
    reply = Message.objects.get(pk=uid(2))
    assert (reply.text, reply.rank) == ("The moon pulls the oceans.", 0)
    assert Message.objects.get(pk=uid(3)).review_result is True and not MessageRevision.objects.exists()


def test_update_changed_takes_the_file_values_and_recounts(tmp_path):
    import_file(path=snapshot_file(tmp_path, older_snapshot(), "old.jsonl"))

    report = import_file(path=snapshot_file(tmp_path, changed_snapshot(), "changed.jsonl"), update_changed=True)

    assert report.trees_merged == {uid(1): [uid(3), uid(4), uid(5)]}
    assert {(c.message_id, c.field, c.applied) for c in report.changes} == {(uid(2), "text", True),
                                                                           (uid(2), "rank", True)}
    reply = Message.objects.get(pk=uid(2))
    assert (reply.text, reply.rank, reply.edited) == ("The moon and the sun pull the oceans.", 1, True)
    assert list(MessageRevision.objects.values_list("message_id", "text")) == [(reply.pk, "The moon pulls the oceans.")]
    assert Message.objects.get(pk=uid(3)).review_result is False  # a new message: the file's value
    assert Message.objects.get(pk=uid(1)).children_count == 1  # the rejected reply does not count
    assert MessageTree.objects.get(pk=uid(1)).message_count == 4
    assert_counters_equal_a_recompute([uid(1)])


def test_update_changed_of_a_review_recounts_the_tree(tmp_path):
    import_file(path=snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"))

    import_file(path=snapshot_file(tmp_path, changed_snapshot(), "changed.jsonl"), update_changed=True)

    assert Message.objects.get(pk=uid(3)).review_result is False
    assert (MessageTree.objects.get(pk=uid(1)).message_count, Message.objects.get(pk=uid(1)).children_count) == (4, 1)
    assert_counters_equal_a_recompute([uid(1)])


def test_a_field_the_file_leaves_out_is_not_compared(tmp_path):
    import_file(path=snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"))
    without_labels = newer_snapshot()
    for message in walk(without_labels[0]["prompt"]):
        message.pop("labels", None)
        message.pop("created_date", None)

    report = import_file(path=snapshot_file(tmp_path, without_labels, "plain.jsonl"), update_changed=True)

    assert report.changes == [] and len(report.trees_skipped) == 3
    assert Message.objects.get(pk=uid(5)).labels == {"quality": {"value": 0.75, "count": 4}}


def test_a_message_whose_parent_is_nowhere_refuses_the_tree_unchanged(tmp_path):
    import_file(path=snapshot_file(tmp_path, older_snapshot(), "old.jsonl"))
    before = counters(uid(1))
    newer = newer_snapshot()
    rows = [row for row in flat_rows(newer[0]) if row["message_id"] != uid(4)]  # message 5 stays, its parent goes

    report = import_file(path=snapshot_file(tmp_path, [newer[1], *rows], "broken.jsonl"))

    assert report.trees_refused == {
        uid(1): f"message {uid(5)}: its parent {uid(4)} is neither in the database nor in the file"}
    assert not Message.objects.filter(pk__in=[uid(3), uid(5)]).exists()
    assert counters(uid(1)) == before
    assert report.trees_created == 1 and Message.objects.filter(tree_id=uid(10)).count() == 2


def test_a_message_with_another_parent_or_tree_refuses_the_tree(tmp_path):
    import_file(path=snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"))
    moved = newer_snapshot()
    moved[0]["prompt"]["replies"][1]["replies"] = [moved[0]["prompt"]["replies"][0]["replies"].pop()]
    stolen = tree(node(30, "Another prompt.", "prompter", node(11, "Mars.", "assistant")))

    report = import_file(path=snapshot_file(tmp_path, [moved[0], stolen], "moved.jsonl"))

    assert "message " + uid(4) + " has parent " + uid(2) in report.trees_refused[uid(1)]
    assert "belongs to tree " + uid(10) in report.trees_refused[uid(30)]
    assert Message.objects.get(pk=uid(4)).parent_id == Message.objects.get(pk=uid(2)).pk
    assert not MessageTree.objects.filter(pk=uid(30)).exists()


def test_both_snapshots_in_one_file_end_as_the_newer(tmp_path):
    path = snapshot_file(tmp_path, [*older_snapshot(), *newer_snapshot()], "both.jsonl")

    report = import_file(path=path)

    assert report.trees_created == 3 and report.trees_merged == {uid(1): [uid(3), uid(4), uid(5)]}
    assert {str(pk) for pk in Message.objects.values_list("pk", flat=True)} == all_ids(newer_snapshot())


def test_a_tree_the_database_refuses_does_not_stop_the_others_of_its_batch(tmp_path, monkeypatch):
    insert = import_write.rows_insert

    def refusing(model, rows):
        if any(row["id"] == uid(11) for row in rows):
            raise IntegrityError("refused for the test")
        insert(model, rows)

    monkeypatch.setattr(import_write, "rows_insert", refusing)

    report = import_file(path=snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"))

    assert report.trees_created == 2 and "refused for the test" in report.trees_refused[uid(10)]
    assert set(MessageTree.objects.values_list("pk", flat=True)) == {
        MessageTree.objects.get(pk=uid(1)).pk, MessageTree.objects.get(pk=uid(20)).pk}
    assert Message.objects.count() == 7


def test_merge_plan_orders_new_messages_parents_first_from_the_database_tree():
    rows = [{"message_id": "c", "parent_id": "b", "text": "C", "role": "prompter"},
            {"message_id": "b", "parent_id": "a", "text": "B", "role": "assistant"}]
    existing = {"a": {"tree_id": "t", "parent_id": None, "depth": 0}}

    plan = merge_plan("t", rows, existing)

    assert [(row["message_id"], row["depth"]) for row in plan.new_rows] == [("b", 1), ("c", 2)]
    with pytest.raises(TreeRefused, match="second prompt"):
        merge_plan("t", [{"message_id": "z", "text": "Z", "role": "prompter"}], existing)
    with pytest.raises(TreeRefused, match="appears twice"):
        merge_plan("t", rows + rows[:1], existing)


def test_command_prints_a_summary_per_tree_lines_and_a_jsonl_report(tmp_path):
    import_(snapshot_file(tmp_path, older_snapshot(), "old.jsonl"))
    report_path = tmp_path / "report.jsonl"

    output = import_(snapshot_file(tmp_path, changed_snapshot(), "changed.jsonl"), "--report", str(report_path),
                     "-v", "2")

    assert "Imported 1 trees, 5 messages" in output and "added 3 messages to 1 existing trees" in output
    assert "skipped 1 existing trees" in output
    assert "2 changed fields in 1 trees reported, not applied (--update-changed applies them)" in output
    assert f"tree {uid(1)}: merged, 3 messages added, 2 changed fields" in output
    assert f"differs: message {uid(2)} rank: database 0, file 1" in output
    lines = {line["tree_id"]: line for line in read_lines(report_path)}
    assert lines[uid(1)]["status"] == "merged" and lines[uid(1)]["added"] == [uid(3), uid(4), uid(5)]
    assert {change["field"] for change in lines[uid(1)]["changes"]} == {"text", "rank"}
    assert lines[uid(10)] == {"tree_id": uid(10), "status": "created", "added": [uid(10), uid(11)], "changes": []}
    assert lines[uid(20)]["status"] == "identical"

    updated = import_(snapshot_file(tmp_path, changed_snapshot(), "changed.jsonl"), "--update-changed")

    assert "2 changed fields in 1 trees updated from the file" in updated
    assert Message.objects.get(pk=uid(2)).rank == 1
    assert "changed fields" not in import_(tmp_path / "changed.jsonl")


@needs_data
def test_real_trees_older_then_newer_snapshot_loses_no_message(tmp_path):
    newer = read_lines(TREES_FILE)
    older = copy.deepcopy(newer[5:])  # 5 trees only in the newer snapshot
    removed = 0
    for item in older[:20]:  # and 20 trees lack their last reply to the prompt, with its subtree
        replies = item["prompt"]["replies"]
        if replies:
            removed += sum(1 for _ in walk(replies.pop()))
    import_file(path=write_lines(tmp_path / "older.jsonl", older))

    report = import_file(path=TREES_FILE)

    assert report.trees_created == 5 and len(report.trees_merged) == 20 and report.changes == []
    assert report.messages_added == removed
    assert {str(pk) for pk in Message.objects.values_list("pk", flat=True)} == all_ids(newer)
    assert normalized_trees(export(tmp_path, "--include-synthetic")) == normalized_trees(newer)
    assert_counters_equal_a_recompute([item["message_tree_id"] for item in newer])
    again = import_file(path=TREES_FILE)
    assert (again.messages_created, again.changes, len(again.trees_skipped)) == (0, [], 100)


@pytest.mark.postgres
def test_postgres_copy_keeps_dates_json_and_merges(tmp_path):
    assert connection.vendor == "postgresql"
    import_file(path=snapshot_file(tmp_path, older_snapshot(), "old.jsonl"))
    report = import_file(path=snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"))

    assert report.trees_merged == {uid(1): [uid(3), uid(4), uid(5)]}
    added = Message.objects.get(pk=uid(5))
    assert added.created_at.isoformat() == "2023-03-01T12:00:00+00:00"
    assert added.labels == {"quality": {"value": 0.75, "count": 4}} and added.emojis["red_flag"] == 1
    assert import_file(path=tmp_path / "new.jsonl").changes == []


def test_values_the_database_cannot_hold_are_refused_as_malformed_lines(tmp_path):
    lines = [tree(node(40, "A NUL \u0000 here.", "prompter")),
             tree(node(41, "Long lang.", "prompter", lang="e" * 17)),
             tree(node(42, "Huge rank.", "prompter", rank=40000)),
             tree(node(43, "Bad emoji.", "prompter", emojis={"+1": -1})),
             tree(node(44, "Text \\u0000 as written.", "prompter"))]

    report = import_file(path=snapshot_file(tmp_path, lines, "bad.jsonl"))

    assert [error.split(":")[0] for error in report.errors] == ["line 1", "line 2", "line 3", "line 4"]
    assert "NUL" in report.errors[0] and report.trees_created == 1
    assert Message.objects.get().text == "Text \\u0000 as written."


def test_an_unwritable_report_file_is_a_command_error_before_anything_is_imported(tmp_path):
    with pytest.raises(CommandError, match="Cannot write the report"):
        import_(snapshot_file(tmp_path, newer_snapshot(), "new.jsonl"), "--report", str(tmp_path / "no" / "r.jsonl"))
    assert not MessageTree.objects.exists()
