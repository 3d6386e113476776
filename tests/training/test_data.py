"""Export reading, grouping, the split by tree and pair expansion (training/data.py)."""

import gzip
import json
from pathlib import Path

import pytest

from training.data import (
    comparison_groups,
    dataset_stats,
    load_groups,
    preference_pairs,
    read_messages,
    split_by_tree,
)

SHARED_TREES = Path(__file__).resolve().parents[3] / "shared" / "data" / "oasst_en_100_trees.jsonl"
needs_shared_trees = pytest.mark.skipif(not SHARED_TREES.exists(), reason=f"shared data missing: {SHARED_TREES}")


def _hand_count(path: Path) -> tuple[int, int, int]:
    """Groups, pairs and ranked replies kept, counted by walking the nested trees directly."""
    groups = pairs = kept = 0

    def walk(node):
        nonlocal groups, pairs, kept
        ranked = [r for r in node.get("replies", []) if not r.get("deleted") and r.get("rank") is not None]
        k = min(len(ranked), 5)
        if k >= 2:
            groups += 1
            pairs += k * (k - 1) // 2
            kept += k
        for reply in node.get("replies", []):
            walk(reply)

    for line in path.read_text().splitlines():
        walk(json.loads(line)["prompt"])
    return groups, pairs, kept


@needs_shared_trees
def test_shared_trees_give_the_hand_counted_groups_and_pairs():
    groups = load_groups(SHARED_TREES)
    stats = dataset_stats(groups)
    hand_groups, hand_pairs, hand_kept = _hand_count(SHARED_TREES)
    assert (stats.groups, stats.pairs) == (hand_groups, hand_pairs)
    assert sum(len(group.replies) for group in groups) == hand_kept
    assert (stats.trees, stats.groups, stats.pairs, stats.languages) == (100, 212, 680, {"en": 680})
    assert len(preference_pairs(groups)) == 680


@needs_shared_trees
def test_replies_are_sorted_best_first_and_the_conversation_ends_at_the_parent():
    messages = {m["message_id"]: m for m in read_messages(SHARED_TREES)}
    assert len(messages) == 1167
    for group in load_groups(SHARED_TREES):
        assert [reply.rank for reply in group.replies] == sorted(reply.rank for reply in group.replies)
        assert group.conversation[-1].text == messages[group.parent_id]["text"]
        assert group.conversation[0].role == "prompter"
        assert all(messages[reply.message_id]["parent_id"] == group.parent_id for reply in group.replies)


@needs_shared_trees
def test_split_puts_each_tree_on_one_side_and_is_seeded():
    groups = load_groups(SHARED_TREES)
    train, evaluation = split_by_tree(groups, eval_fraction=0.1, seed=3)
    assert len(train) + len(evaluation) == len(groups)
    assert not {g.tree_id for g in train} & {g.tree_id for g in evaluation}
    assert len({g.tree_id for g in evaluation}) == 10
    assert split_by_tree(groups, eval_fraction=0.1, seed=3) == (train, evaluation)
    assert split_by_tree(groups, eval_fraction=0.1, seed=4)[1] != evaluation


@needs_shared_trees
def test_flat_message_file_and_gzip_give_the_same_groups_as_the_tree_file(tmp_path):
    flat_gz = tmp_path / "messages.jsonl.gz"
    with gzip.open(flat_gz, "wt") as handle:
        for message in read_messages(SHARED_TREES):
            handle.write(json.dumps(message) + "\n")
    assert load_groups(flat_gz) == load_groups(SHARED_TREES)


def _node(message_id, parent_id, rank=None, **extra):
    return {
        "message_id": message_id,
        "parent_id": parent_id,
        "message_tree_id": "t1",
        "text": message_id,
        "role": "assistant" if parent_id == "p" else "prompter",
        "lang": "de",
        "rank": rank,
        **extra,
    }


def test_deleted_and_unranked_replies_are_skipped_and_groups_hold_at_most_five():
    messages = [_node("p", None)] + [_node(f"a{i}", "p", rank=i) for i in range(7)]
    messages += [_node("gone", "p", rank=0, deleted=True), _node("unranked", "p")]
    (group,) = comparison_groups(messages)
    assert [reply.message_id for reply in group.replies] == ["a0", "a1", "a2", "a3", "a4"]
    pairs = preference_pairs([group])
    assert len(pairs) == 10
    assert sorted(pair.rank_gap for pair in pairs) == [1, 1, 1, 1, 2, 2, 2, 3, 3, 4]


def test_a_parent_with_one_ranked_reply_gives_no_group():
    assert comparison_groups([_node("p", None), _node("a0", "p", rank=0), _node("a1", "p")]) == []


def test_hugging_face_rows_with_columnwise_emojis_are_read(tmp_path):
    rows = [
        _node("p", None, emojis={"name": ["+1"], "count": [2]}),
        _node("a0", "p", rank=1.0),
        _node("a1", "p", rank=0.0, labels={"name": ["spam"], "value": [0.0], "count": [3]}),
    ]
    path = tmp_path / "hf.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    (group,) = load_groups(path)
    assert [reply.text for reply in group.replies] == ["a1", "a0"]
    assert group.lang == "de"


def test_a_line_that_is_not_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": {"message_id": "x"}}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_messages(path)
