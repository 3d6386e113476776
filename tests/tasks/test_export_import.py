"""The oasst export and import: round trips, flat rows, filters, anonymisation, idempotence, bad input."""

import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from tasks import services
from tasks.export import ExportFilters, anonymizer, export_to_file, manifest_path_for
from tasks.importer import import_file
from tasks.models import Message, MessageTree, TreeState
from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks import builders

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
TREES_FILE = DATA_DIR / "oasst_en_100_trees.jsonl"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "oasst-export.schema.json"

needs_data = pytest.mark.skipif(not TREES_FILE.exists(),
                                reason=f"shared test data missing: {TREES_FILE} (../shared/data from the repository)")

pytestmark = pytest.mark.django_db


def read_lines(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def export(tmp_path: Path, *args: str, name: str = "out.jsonl") -> list[dict]:
    out = tmp_path / name
    if "--anonymize" not in args:  # these tests compare ids with the source; anonymisation is the default
        args = ("--no-anonymize", *args)
    call_command("export_trees", str(out), "--no-progress", *args, stdout=_Sink(), stderr=_Sink())
    return read_lines(out)


def import_(path: Path, *args: str) -> str:
    out = _Sink()
    call_command("import_trees", str(path), "--no-progress", *args, stdout=out, stderr=out)
    return out.text


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def normalized_node(node: dict) -> dict:
    """A node without the fields a file without users and dates cannot keep, replies by id."""
    kept = {key: value for key, value in node.items()
            if key not in {"created_date", "user_id", "replies"} and value not in (None, "", {}, [])}
    kept["replies"] = sorted((normalized_node(reply) for reply in node.get("replies", ())),
                             key=lambda reply: reply["message_id"])
    return kept


def normalized_trees(trees: list[dict]) -> dict:
    return {tree["message_tree_id"]: (tree["tree_state"], normalized_node(tree["prompt"])) for tree in trees}


def walk(node: dict):
    yield node
    for reply in node.get("replies", ()):
        yield from walk(reply)


def without_synthetic(node: dict) -> dict | None:
    if node.get("synthetic"):
        return None
    replies = [kept for reply in node.get("replies", ()) if (kept := without_synthetic(reply)) is not None]
    return {**node, "replies": replies}


def hf_rows(trees: list[dict]) -> list[dict]:
    """The trees as Hugging Face rows: one flat message per row, emojis and labels column-wise."""
    rows = []
    for tree in trees:
        for node in walk(tree["prompt"]):
            row = {key: value for key, value in node.items() if key != "replies"}
            row["message_tree_id"] = tree["message_tree_id"]
            row["tree_state"] = tree["tree_state"]
            row.setdefault("parent_id", None)
            row["rank"] = float(node["rank"]) if node.get("rank") is not None else float("nan")  # a pandas column
            emojis = node.get("emojis") or {}
            row["emojis"] = {"name": list(emojis), "count": list(emojis.values())} if emojis else None
            labels = node.get("labels") or {}
            row["labels"] = ({"name": list(labels), "value": [v["value"] for v in labels.values()],
                              "count": [v["count"] for v in labels.values()]} if labels else None)
            rows.append(row)
    return rows[::-1]  # replies before their parents: the importer must not depend on order


def write_lines(path: Path, records: list) -> Path:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


@pytest.fixture
def source_trees() -> list[dict]:
    if not TREES_FILE.exists():
        pytest.skip(f"shared test data missing: {TREES_FILE}")
    return read_lines(TREES_FILE)


@needs_data
def test_round_trip_of_the_100_trees_keeps_trees_messages_ranks_and_texts(tmp_path, source_trees):
    assert "Imported 100 trees, 1167 messages" in import_(TREES_FILE)

    exported = export(tmp_path, "--include-synthetic")

    assert normalized_trees(exported) == normalized_trees(source_trees)
    assert sum(1 for tree in exported for _ in walk(tree["prompt"])) == 1167
    assert Message.objects.count() == 1167


@needs_data
def test_default_export_drops_exactly_the_synthetic_messages_and_their_subtrees(tmp_path, source_trees):
    import_(TREES_FILE)
    synthetic = {node["message_id"] for tree in source_trees for node in walk(tree["prompt"]) if node.get("synthetic")}
    expected = {tree["message_tree_id"]: kept for tree in source_trees
                if (kept := without_synthetic(tree["prompt"])) is not None}

    exported = export(tmp_path)

    assert len(synthetic) == 22
    assert {tree["message_tree_id"]: normalized_node(tree["prompt"]) for tree in exported} == \
        {tree_id: normalized_node(node) for tree_id, node in expected.items()}
    exported_ids = {node["message_id"] for tree in exported for node in walk(tree["prompt"])}
    assert not exported_ids & synthetic
    assert len(exported_ids) == 1167 - 22


@needs_data
def test_replies_are_sorted_by_rank_with_unranked_last(tmp_path):
    import_(TREES_FILE)
    for tree in export(tmp_path, "--include-synthetic"):
        for node in walk(tree["prompt"]):
            ranks = [reply.get("rank") for reply in node["replies"]]
            ranked = [rank for rank in ranks if rank is not None]
            assert ranks == sorted(ranked) + [None] * (len(ranks) - len(ranked))


@needs_data
@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_hugging_face_flat_rows_rebuild_the_same_trees(tmp_path, source_trees, name):
    rows_file = write_lines(tmp_path / name, hf_rows(source_trees))

    assert "Imported 100 trees, 1167 messages" in import_(rows_file)

    assert normalized_trees(export(tmp_path, "--include-synthetic")) == normalized_trees(source_trees)


@needs_data
def test_message_export_reimports_as_the_same_trees(tmp_path, source_trees):
    import_(TREES_FILE)
    messages = export(tmp_path, "--include-synthetic", "--format", "messages", name="messages.jsonl.gz")
    assert len(messages) == 1167 and all("replies" not in row and row["tree_state"] for row in messages)
    MessageTree.objects.all().delete()

    import_(tmp_path / "messages.jsonl.gz")

    assert normalized_trees(export(tmp_path, "--include-synthetic")) == normalized_trees(source_trees)


def test_nested_message_file_and_labels_and_emojis_survive(tmp_path):
    root = {"message_id": "11111111-1111-4111-8111-111111111111", "text": "Why is the sky blue?", "role": "prompter",
            "lang": "en", "review_count": 3, "review_result": True, "user_id": "abc-user",
            "created_date": "2023-02-05T10:00:00+00:00",
            "labels": {"spam": {"value": 0.0, "count": 3}}, "emojis": {"+1": 2},
            "replies": [{"message_id": "22222222-2222-4222-8222-222222222222", "text": "Rayleigh scattering.",
                         "role": "assistant", "lang": "en", "rank": 0, "emojis": {"red_flag": 1}, "replies": []}]}
    import_(write_lines(tmp_path / "nested.jsonl", [root]))

    prompt = Message.objects.get(pk=root["message_id"])
    reply = Message.objects.get(pk="22222222-2222-4222-8222-222222222222")
    assert prompt.tree_id == prompt.pk and prompt.labels == {"spam": {"value": 0.0, "count": 3}}
    assert prompt.emojis == {"+1": 2} and prompt.created_at.year == 2023
    assert reply.parent_id == prompt.pk and reply.rank == 0 and reply.depth == 1 and reply.red_flags == 1
    placeholder = prompt.author
    assert placeholder.username == "imported-abc-user"
    assert not placeholder.is_active and not placeholder.has_usable_password()
    tree = prompt.tree
    assert (tree.message_count, tree.accepted_count, tree.awaiting_review) == (2, 1, 1)
    assert Message.objects.get(pk=prompt.pk).children_count == 1


@needs_data
def test_orphan_rows_are_reported_and_skipped(tmp_path, source_trees):
    rows = hf_rows(source_trees[:1])
    orphan = {**rows[0], "message_id": "33333333-3333-4333-8333-333333333333",
              "parent_id": "44444444-4444-4444-8444-444444444444"}
    output = import_(write_lines(tmp_path / "rows.jsonl", [*rows, orphan]))

    assert "1 orphan messages" in output and orphan["message_id"] in output
    assert Message.objects.count() == len(rows)
    assert not Message.objects.filter(pk=orphan["message_id"]).exists()


@needs_data
def test_a_second_import_adds_nothing_and_reports_the_skipped_trees(tmp_path):
    import_(TREES_FILE)
    counts = (MessageTree.objects.count(), Message.objects.count(), get_user_model().objects.count())

    output = import_(TREES_FILE)

    assert "Imported 0 trees" in output and "skipped 100 existing trees" in output
    assert (MessageTree.objects.count(), Message.objects.count(), get_user_model().objects.count()) == counts


@needs_data
def test_backlog_ranking_switch_sets_the_state(tmp_path):
    import_(TREES_FILE, "--backlog-ranking")
    assert set(MessageTree.objects.values_list("state", flat=True)) == {TreeState.BACKLOG_RANKING}


@needs_data
def test_malformed_lines_are_reported_by_number_and_skipped(tmp_path, source_trees):
    lines = [source_trees[0], "{not json", {"message_tree_id": "x", "prompt": {"text": "no id"}}, source_trees[1]]
    output = import_(write_lines(tmp_path / "bad.jsonl", lines))

    assert "line 2" in output and "line 3" in output
    assert "Imported 2 trees" in output
    assert MessageTree.objects.count() == 2


@needs_data
def test_stop_on_error_stops_at_the_malformed_line_without_half_a_tree(tmp_path, source_trees):
    bad_tree = json.loads(json.dumps(source_trees[1]))
    bad_tree["prompt"]["replies"][0]["role"] = "wizard"
    path = write_lines(tmp_path / "bad.jsonl", [source_trees[0], bad_tree, source_trees[2]])

    with pytest.raises(CommandError, match="line 2"):
        import_(path, "--stop-on-error")

    assert list(MessageTree.objects.values_list("id", flat=True)) == [
        __import__("uuid").UUID(source_trees[0]["message_tree_id"])]
    assert not Message.objects.filter(pk=bad_tree["prompt"]["message_id"]).exists()


@needs_data
def test_filters_by_state_and_language(tmp_path, source_trees):
    import_(TREES_FILE)
    first, second = (MessageTree.objects.get(pk=tree["message_tree_id"]) for tree in source_trees[:2])
    MessageTree.objects.filter(pk=first.pk).update(state=TreeState.RANKING)
    MessageTree.objects.filter(pk=second.pk).update(lang="de")

    ranking = export(tmp_path, "--state", "ranking", "--include-synthetic")
    german = export(tmp_path, "--lang", "de", "--include-synthetic", "--state", "ready_for_export")
    english = export(tmp_path, "--lang", "en", "--include-synthetic")

    assert [tree["message_tree_id"] for tree in ranking] == [str(first.pk)]
    assert [tree["message_tree_id"] for tree in german] == [str(second.pk)]
    assert len(english) == 98


@needs_data
def test_filters_by_date_range(tmp_path, source_trees):
    import_(TREES_FILE)
    old = MessageTree.objects.get(pk=source_trees[0]["message_tree_id"])
    MessageTree.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    cutoff = (timezone.now() - timedelta(days=1)).date().isoformat()

    before = export(tmp_path, "--until", cutoff, "--include-synthetic")
    after = export(tmp_path, "--since", cutoff, "--include-synthetic")

    assert [tree["message_tree_id"] for tree in before] == [str(old.pk)]
    assert len(after) == 99


def test_filter_by_user_and_messages_format(tmp_path, small_trees):
    alice, bob = UserFactory(), UserFactory()
    prompt = builders.write_prompt(alice, text="What is a monad?")
    builders.write_prompt(bob, text="What is a functor?")

    trees = export(tmp_path, "--state", "initial_prompt_review", "--user", str(alice.pk))
    messages = export(tmp_path, "--state", "initial_prompt_review", "--user", str(bob.pk), "--format", "messages")

    assert [tree["prompt"]["message_id"] for tree in trees] == [str(prompt.pk)]
    assert [row["user_id"] for row in messages] == [str(bob.pk)]


@needs_data
def test_anonymisation_replaces_every_id_with_the_same_hash_for_the_same_seed(tmp_path, source_trees):
    import_(TREES_FILE)
    original = {node["message_id"] for tree in source_trees for node in walk(tree["prompt"])}

    first = export(tmp_path, "--anonymize", "seed-1", "--include-synthetic", name="a.jsonl")
    again = export(tmp_path, "--anonymize", "seed-1", "--include-synthetic", name="b.jsonl")
    other = export(tmp_path, "--anonymize", "seed-2", "--include-synthetic", name="c.jsonl")
    flat = export(tmp_path, "--anonymize", "seed-1", "--include-synthetic", "--format", "messages", name="d.jsonl")

    text = (tmp_path / "a.jsonl").read_text()
    assert not any(identifier in text for identifier in original)
    assert first == again and first != other
    anonymize = anonymizer("seed-1")
    assert {tree["message_tree_id"] for tree in first} == {anonymize(tree["message_tree_id"]) for tree in source_trees}
    tree_ids = {node["message_id"] for tree in first for node in walk(tree["prompt"])}
    assert {row["message_id"] for row in flat} == tree_ids
    for tree in first:  # parents still point at their (anonymised) parents
        for node in walk(tree["prompt"]):
            assert all(reply["parent_id"] == node["message_id"] for reply in node["replies"])


def test_anonymisation_hides_user_ids(tmp_path, small_trees):
    alice = UserFactory()
    builders.write_prompt(alice)
    [row] = export(tmp_path, "--state", "initial_prompt_review", "--format", "messages", "--anonymize", "s")
    assert row["user_id"] != str(alice.pk) and row["user_id"] == anonymizer("s")(str(alice.pk))


@needs_data
def test_manifest_records_counts_filters_and_checksum(tmp_path):
    import_(TREES_FILE)
    out = tmp_path / "out.jsonl.gz"
    result = export_to_file(path=out, filters=ExportFilters(langs=("en",)))
    manifest = json.loads(manifest_path_for(out).read_text())

    import hashlib
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == result.sha256
    assert (manifest["trees"], manifest["messages"]) == (95, 1145)
    assert manifest["filters"]["langs"] == ["en"] and manifest["compressed"] is True


def test_export_of_a_tree_grown_through_the_services(tmp_path, small_trees):
    prompter, helper, reviewer = UserFactory(), UserFactory(), UserFactory()
    prompt = builders.write_prompt(prompter, text="How do tides work?")
    builders.review_of(reviewer, prompt)
    services.lottery_activate(lang="en")  # activation runs on commit, which the test transaction never does
    first = builders.reply_to(helper, prompt, "The moon's gravity pulls the oceans.")
    second = builders.reply_to(reviewer, prompt, "Mostly the moon, a bit the sun.")
    Message.objects.filter(pk=first.pk).update(rank=1)
    Message.objects.filter(pk=second.pk).update(rank=0)
    spam = builders.reply_to(prompter, prompt, "Buy cheap watches!")
    Message.objects.filter(pk=spam.pk).update(review_result=False)
    state = MessageTree.objects.get(pk=prompt.tree_id).state

    [tree] = export(tmp_path, "--state", state)
    [with_spam] = export(tmp_path, "--state", state, "--include-spam", "--labels")

    assert tree["message_tree_id"] == str(prompt.tree_id) and tree["tree_state"] == state
    node = tree["prompt"]
    assert node["user_id"] == str(prompter.pk) and node["text"] == "How do tides work?"
    assert node["created_date"].startswith(str(timezone.now().year))
    assert [reply["message_id"] for reply in node["replies"]] == [str(second.pk), str(first.pk)]
    assert all(reply["role"] == "assistant" and reply["parent_id"] == str(prompt.pk) for reply in node["replies"])
    assert str(spam.pk) in {reply["message_id"] for reply in with_spam["prompt"]["replies"]}
    api = token_client(prompter).get(f"/api/v1/messages/{prompt.pk}/tree/")
    assert api.status_code == 200 and json.loads(json.dumps(api.json())) == with_spam  # one node format for both
    assert "labels" in with_spam["prompt"] and "labels" not in node  # labels only with --labels


def test_events_carry_reactions_and_rankings_and_are_anonymised(tmp_path, small_trees):
    from ranking.models import Ranking

    asker, ann, ben, voter = (UserFactory() for _ in range(4))
    prompt = builders.write_prompt(asker, text="Name a planet.")
    builders.review_of(UserFactory(), prompt)
    services.lottery_activate(lang="en")
    first = builders.reply_to(ann, prompt, "Mars.")
    second = builders.reply_to(ben, prompt, "Venus.")
    services.emoji_set(user=voter, message_id=first.pk, emoji="+1", op="add")
    Ranking.objects.create(parent=prompt, user=voter, ranking=[str(second.pk), str(first.pk)])
    state = MessageTree.objects.get(pk=prompt.tree_id).state

    [plain] = export(tmp_path, "--state", state)
    [tree] = export(tmp_path, "--state", state, "--events")
    assert "events" not in json.dumps(plain)
    assert tree["prompt"]["events"]["ranking"] == [{"type": "ranking", "user_id": str(voter.pk),
                                                    "ranked_message_ids": [str(second.pk), str(first.pk)],
                                                    "not_rankable": False}]
    mars = next(r for r in tree["prompt"]["replies"] if r["text"] == "Mars.")
    assert mars["events"]["emoji"] == [{"type": "emoji", "user_id": str(voter.pk), "emoji": "+1"}]
    [hidden] = export(tmp_path, "--state", state, "--events", "--anonymize", "s")
    text = json.dumps(hidden)
    assert str(voter.pk) not in [e["user_id"] for e in hidden["prompt"]["events"]["ranking"]]
    assert str(second.pk) not in text and str(first.pk) not in text


@needs_data
def test_exports_validate_against_the_json_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()),
                                                format_checker=jsonschema.FormatChecker())
    import_(TREES_FILE)
    user = UserFactory()
    prompt = builders.write_prompt(user)
    Message.objects.filter(pk=prompt.pk).update(labels={"spam": {"value": 0.0, "count": 1}}, emojis={"+1": 1})

    lines = (export(tmp_path, "--include-synthetic", "--state", "ready_for_export", "--state", "initial_prompt_review")
             + export(tmp_path, "--include-synthetic", "--format", "messages", "--state", "initial_prompt_review",
                      "--state", "ready_for_export", name="m.jsonl.gz"))
    assert len(lines) == 101 + 1168
    for line in lines:
        validator.validate(line)
    for bad in ({"message_tree_id": "x"}, {**lines[0], "prompt": {"text": "no id"}}, {**lines[-1], "replies": []}):
        assert not validator.is_valid(bad)


def test_unreadable_input_is_a_command_error(tmp_path):
    with pytest.raises(CommandError):
        import_(tmp_path / "missing.jsonl")


def test_import_service_reports_per_tree(tmp_path):
    path = write_lines(tmp_path / "one.jsonl", [{"message_id": "55555555-5555-4555-8555-555555555555",
                                                 "text": "Hello?", "role": "prompter", "lang": "en"}])
    report = import_file(path=path)
    again = import_file(path=path)
    assert (report.trees_created, report.messages_created) == (1, 1)
    assert again.trees_skipped == ["55555555-5555-4555-8555-555555555555"] and again.trees_created == 0


@needs_data
def test_imported_counters_match_a_recompute(tmp_path, source_trees):
    rows = hf_rows(source_trees[:3])
    rows[0] = {**rows[0], "deleted": True}
    rows[1] = {**rows[1], "review_result": False}
    rows[2] = {**rows[2], "review_result": None}
    import_(write_lines(tmp_path / "rows.jsonl", rows))
    counter_fields = ("message_count", "accepted_count", "awaiting_review", "replies_pending")

    for tree in MessageTree.objects.all():
        imported = ([getattr(tree, name) for name in counter_fields],
                    dict(tree.messages.values_list("id", "children_count")))
        services.tree_counters_recompute(tree)
        tree.refresh_from_db()
        assert imported == ([getattr(tree, name) for name in counter_fields],
                            dict(tree.messages.values_list("id", "children_count")))


def test_export_trees_creates_the_folder_it_writes_into(tmp_path):
    prompt = builders.write_prompt(UserFactory())
    MessageTree.objects.filter(pk=prompt.tree_id).update(state=TreeState.READY_FOR_EXPORT)
    rows = export(tmp_path, name="out/nested/trees.jsonl.gz")
    assert len(rows) == 1 and manifest_path_for(tmp_path / "out" / "nested" / "trees.jsonl.gz").is_file()


def test_the_same_trees_exported_at_different_times_give_the_same_gzip_file(tmp_path, monkeypatch):
    """A release's checksum depends on its data only: gzip's header carries no time."""
    builders.write_prompt(UserFactory(), text="Why do cats purr when they are content?")
    files = []
    for moment in (1_000_000_000, 2_000_000_000):
        monkeypatch.setattr(gzip.time, "time", lambda moment=moment: moment)
        files.append(export_to_file(path=tmp_path / str(moment) / "trees.jsonl.gz", filters=ExportFilters(states=()),
                                    fmt="trees", anonymize_seed="s"))
    assert files[0].sha256 == files[1].sha256
    assert files[0].trees > 0
