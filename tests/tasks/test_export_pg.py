"""The PostgreSQL export (tasks.export_pg) writes the same records as the Python one, byte for byte,
for every filter, switch and format, anonymised or not; and it is the one used on PostgreSQL."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from ranking.models import Ranking
from tasks import export_pg
from tasks.export import ExportFilters, counted_lines, export_to_file, manifest_path_for
from tasks.models import EmojiReaction, Message, MessageTree, TreeState
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Texts JSON must escape, and what COPY or a careless escaper would mangle.
TEXTS = ['Say "hi"\\n, then a tab:\t and a real newline:\nend.', "Ünïcödé ✓ 日本語 🙂", "back\\slash \\\\ and \x01\x1f",
         "/<script>&amp;", "plain"]


def tree_with_messages(*, state=TreeState.READY_FOR_EXPORT, lang="en", offset=0, authors=(), shape=()):
    """A tree with a prompt and replies: shape is a list of (parent index, role, rank, extra fields)."""
    tree = MessageTree.objects.create(state=state, lang=lang, origin="import" if offset % 2 else "platform",
                                      goal_tree_size=12, max_depth=5, max_children_count=3)
    MessageTree.objects.filter(pk=tree.pk).update(created_at=START + timedelta(minutes=offset))
    messages = []
    for index, (parent, role, rank, extra) in enumerate([(None, "prompter", None, {}), *shape]):
        parent_message = messages[parent] if parent is not None else None
        message = Message.objects.create(
            id=tree.pk if parent is None else uuid.uuid4(), tree=tree, parent=parent_message, role=role,
            author=authors[index % len(authors)] if authors else None, text=TEXTS[(index + offset) % len(TEXTS)],
            lang=lang, depth=0 if parent_message is None else parent_message.depth + 1, rank=rank,
            review_count=index % 3, **{"review_result": True, **extra})
        moment = START + timedelta(minutes=offset, seconds=index, microseconds=0 if index % 2 else 1234)
        Message.objects.filter(pk=message.pk).update(created_at=moment)
        messages.append(message)
    return tree, messages


@pytest.fixture
def trees():
    ann, ben, cleo = UserFactory(), UserFactory(), UserFactory()
    labels = {"spam": {"value": 0.0, "count": 3}, "quality": {"value": 0.6666666666666666, "count": 3}}
    _, full = tree_with_messages(offset=0, authors=(ann, ben, cleo), shape=[
        (0, "assistant", 1, {"labels": labels, "emojis": {"+1": 2, "red_flag": 1}}),
        (0, "assistant", 0, {"model_name": "gpt-\"quoted\""}),
        (0, "assistant", None, {"synthetic": True}),  # unranked, and left out without include_synthetic
        (0, "assistant", 1, {}),  # ties the first reply's rank: the older one first
        (1, "prompter", None, {"deleted": True}),  # its subtree goes with it
        (5, "assistant", None, {"review_result": None}),
        (2, "prompter", None, {"review_result": False}),  # spam
        (7, "assistant", 0, {"emojis": {}, "labels": {}}),
    ])
    tree_with_messages(offset=1, lang="de", authors=(ben,), shape=[(0, "assistant", None, {"model_name": ""})])
    tree_with_messages(offset=2, state=TreeState.RANKING, authors=(cleo, ann),
                       shape=[(0, "assistant", 0, {}), (0, "assistant", 1, {})])
    _, synthetic_prompt = tree_with_messages(offset=3, shape=[(0, "assistant", None, {})])
    Message.objects.filter(pk=synthetic_prompt[0].pk).update(synthetic=True)  # the whole tree is left out
    orphan_tree, orphaned = tree_with_messages(offset=4, authors=(ann,), shape=[(0, "assistant", None, {})])
    Message.objects.filter(pk=orphaned[0].pk).update(deleted=True)
    EmojiReaction.objects.create(message=full[1], user=ben, emoji="+1")
    EmojiReaction.objects.create(message=full[1], user=cleo, emoji="red_flag")
    Ranking.objects.create(parent=full[0], user=cleo, ranking=[str(full[2].pk), str(full[1].pk)])
    Ranking.objects.create(parent=full[0], user=None, ranking=[], not_rankable=True)
    return {"ann": ann, "ben": ben, "full": full}


def both(filters: ExportFilters, fmt: str, seed: str | None) -> tuple[list, list]:
    return tuple([(line, count, tree) for line, count, tree in
                  counted_lines(filters=filters, fmt=fmt, anonymize_seed=seed, engine=engine)]
                 for engine in ("python", "postgresql"))


def filter_cases(trees) -> dict:
    everything = {"include_deleted": True, "include_spam": True, "include_synthetic": True}
    return {
        "defaults": ExportFilters(),
        "everything": ExportFilters(**everything),
        "deleted": ExportFilters(include_deleted=True),
        "spam": ExportFilters(include_spam=True),
        "synthetic": ExportFilters(include_synthetic=True),
        "states": ExportFilters(states=(TreeState.READY_FOR_EXPORT, TreeState.RANKING), **everything),
        "any state": ExportFilters(states=()),
        "lang": ExportFilters(langs=("de",)),
        "since until": ExportFilters(since=START + timedelta(minutes=1), until=START + timedelta(minutes=3)),
        "user": ExportFilters(user_id=trees["ann"].pk, states=(), **everything),
        "tree ids": ExportFilters(tree_ids=(trees["full"][0].tree_id,)),
        "labels events": ExportFilters(labels=True, events=True, **everything),
        "nothing": ExportFilters(langs=("fr",)),
    }


@pytest.mark.postgres
def test_both_engines_write_the_same_lines_for_every_filter_format_and_anonymisation(trees):
    checked = 0
    for (name, filters), fmt, seed in product(filter_cases(trees).items(), ("trees", "messages"), (None, "seed")):
        python, postgresql = both(filters, fmt, seed)
        assert [json.loads(line) for line, _, _ in postgresql] == [json.loads(line) for line, _, _ in python], name
        assert [line for line, _, _ in postgresql] == [line for line, _, _ in python], name
        assert [count for _, count, _ in postgresql] == [count for _, count, _ in python], name
        checked += len(python)
    assert checked > 100  # the cases export something


@pytest.mark.postgres
def test_the_cases_exercise_what_they_name(trees):
    cases = filter_cases(trees)
    [full] = [record for line, _, _ in both(cases["labels events"], "trees", None)[1]
              if (record := json.loads(line))["message_tree_id"] == str(trees["full"][0].tree_id)]
    replies = full["prompt"]["replies"]
    assert [reply.get("rank") for reply in replies] == [0, 1, 1, None]
    assert full["prompt"]["events"]["ranking"][0]["ranked_message_ids"] == [str(trees["full"][2].pk),
                                                                           str(trees["full"][1].pk)]
    assert replies[1]["labels"]["quality"]["value"] == 0.6666666666666666 and replies[1]["events"]["emoji"]
    assert "emojis" not in replies[0] and replies[0]["model_name"] == 'gpt-"quoted"'
    default = [json.loads(line) for line, _, _ in both(cases["defaults"], "messages", None)[1]]
    assert not any(row.get("deleted") or row.get("synthetic") or row.get("review_result") is False for row in default)
    assert {row["text"] for row in default} >= {TEXTS[0], TEXTS[1], TEXTS[2]}
    assert any(row["created_date"].endswith(".001234+00:00") for row in default)
    assert any("." not in row["created_date"] for row in default)  # whole seconds: no fraction, as isoformat()
    mine = [json.loads(line) for line, _, _ in both(cases["user"], "messages", None)[1]]
    assert {row["user_id"] for row in mine} == {str(trees["ann"].pk)}


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_export_to_file_gives_the_same_file_and_manifest_on_either_engine(tmp_path, trees, name):
    filters = ExportFilters(states=(), include_deleted=True, labels=True)
    results = {engine: export_to_file(path=tmp_path / engine / name, filters=filters, fmt="messages",
                                      anonymize_seed="s", engine=engine) for engine in ("python", "postgresql")}
    python, postgresql = results["python"], results["postgresql"]
    assert (postgresql.trees, postgresql.messages, postgresql.sha256) == (python.trees, python.messages, python.sha256)
    assert postgresql.trees == 4 and postgresql.messages > 10
    manifests = [json.loads(manifest_path_for(result.path).read_text()) for result in (python, postgresql)]
    for manifest in manifests:
        manifest.pop("started_at"), manifest.pop("finished_at")
    assert manifests[0] == manifests[1]


@pytest.mark.postgres
def test_postgresql_is_the_engine_by_default_on_postgresql(trees, monkeypatch):
    calls = []
    real = export_pg.export_lines_pg

    def spy(**kwargs):
        calls.append(kwargs["fmt"])
        return real(**kwargs)

    monkeypatch.setattr("tasks.export.export_lines_pg", spy)
    lines = list(counted_lines(filters=ExportFilters(), fmt="trees"))
    assert calls == ["trees"] and len(lines) == 2


@pytest.mark.postgres
def test_a_reader_stopped_early_leaves_the_connection_usable(trees):
    lines = counted_lines(filters=ExportFilters(states=()), fmt="messages", engine="postgresql")
    next(lines)
    lines.close()
    assert MessageTree.objects.count() == 5


def test_unknown_engine_or_postgresql_engine_elsewhere_is_refused_before_a_file_is_written(tmp_path, database_vendor):
    with pytest.raises(ValueError, match="Unknown export engine"):
        export_to_file(path=tmp_path / "a.jsonl", filters=ExportFilters(), engine="rust")
    if database_vendor != "postgresql":
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            export_to_file(path=tmp_path / "b.jsonl", filters=ExportFilters(), engine="postgresql")
    with pytest.raises(ValueError, match="Unknown format"):
        export_to_file(path=tmp_path / "c.jsonl", filters=ExportFilters(), fmt="csv", engine="auto")
    with pytest.raises(ValueError, match="gzip levels"):
        export_to_file(path=tmp_path / "d.jsonl.gz", filters=ExportFilters(), gzip_level=10)
    assert not list(tmp_path.iterdir())
