"""Preference-pair files in TRL's standard formats, folders of data files, and train-only semantics (no database)."""

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.data import Turn, file_sha256, load_groups
from training.pairs import (
    EXPLICIT,
    IMPLICIT_CONVERSATIONAL,
    IMPLICIT_TEXT,
    OASST,
    PairFileError,
    data_files,
    detect_layout,
    load_reward_data,
    pair_parts,
    read_pair_file,
    source_sha256,
    training_split,
    turns_from_text,
)

from .tiny_models import write_synthetic_export

HH = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf"


def write_jsonl(path: Path, records: list) -> Path:
    text = "".join(json.dumps(record) + "\n" for record in records)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def hh(*turns: str) -> str:
    """Turns alternate Human / Assistant, in HH-RLHF's text layout."""
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {text}" for i, text in enumerate(turns))


IMPLICIT_TEXT_RECORDS = [
    {"chosen": hh("Hi there", "Hello! How can I help?", "Name a colour", "Blue."),
     "rejected": hh("Hi there", "Hello! How can I help?", "Name a colour", "I will not.")},
    {"chosen": hh("What is 2+2?", "4"), "rejected": hh("What is 2+2?", "5")},
]


def test_implicit_text_pairs_split_into_the_shared_conversation_and_final_replies(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", IMPLICIT_TEXT_RECORDS)
    read = read_pair_file(path)
    assert read.layout == IMPLICIT_TEXT == detect_layout(path)
    first, second = read.pairs
    assert first.conversation == (
        Turn("prompter", "Hi there"), Turn("assistant", "Hello! How can I help?"), Turn("prompter", "Name a colour"),
    )
    assert (first.chosen, first.rejected, first.lang, first.rank_gap) == ("Blue.", "I will not.", "und", 1)
    assert (second.conversation, second.chosen, second.rejected) == ((Turn("prompter", "What is 2+2?"),), "4", "5")
    assert first.tree_id != second.tree_id and first.tree_id.startswith(f"pairs:{file_sha256(path)[:12]}:")


def test_a_reply_that_itself_holds_a_turn_marker_stays_whole():
    record = {"chosen": hh("Q", "A\n\nHuman: made up"), "rejected": hh("Q", "Other")}
    conversation, chosen, rejected = pair_parts(record, IMPLICIT_TEXT, "x")
    assert conversation == (Turn("prompter", "Q"),)
    assert (chosen, rejected) == ("A\n\nHuman: made up", "Other")


def test_implicit_conversational_pairs_share_all_messages_but_the_last(tmp_path):
    prefix = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    path = write_jsonl(tmp_path / "conv.jsonl", [
        {"chosen": prefix + [{"role": "assistant", "content": "Paris."}],
         "rejected": prefix + [{"role": "assistant", "content": "Lyon."}], "lang": "en"},
    ])
    (pair,) = read_pair_file(path).pairs
    assert detect_layout(path) == IMPLICIT_CONVERSATIONAL
    assert pair.conversation == (Turn("prompter", "Be brief."), Turn("prompter", "Capital of France?"))
    assert (pair.chosen, pair.rejected, pair.lang) == ("Paris.", "Lyon.", "en")


def test_explicit_prompt_pairs_read_strings_and_message_lists(tmp_path):
    path = write_jsonl(tmp_path / "explicit.jsonl", [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Sky colour?"}],
         "chosen": [{"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "assistant", "content": "Green."}]},
        {"prompt": hh("Sky colour?") + "\n\nAssistant:", "chosen": " Blue.", "rejected": " Green."},
    ])
    first, second, third = read_pair_file(path).pairs
    assert detect_layout(path) == EXPLICIT
    assert (first.conversation, first.chosen, first.rejected) == ((Turn("prompter", "The sky is"),), "blue.", "green.")
    assert second.conversation[-1] == Turn("prompter", "Sky colour?") and len(second.conversation) == 3
    assert (second.chosen, second.rejected) == ("Blue.", "Green.")
    assert (third.conversation, third.chosen) == ((Turn("prompter", "Sky colour?"),), "Blue.")


def test_gzip_and_a_json_array_read_as_the_plain_json_lines_file(tmp_path):
    plain = read_pair_file(write_jsonl(tmp_path / "p.jsonl", IMPLICIT_TEXT_RECORDS)).pairs
    zipped = read_pair_file(write_jsonl(tmp_path / "p.jsonl.gz", IMPLICIT_TEXT_RECORDS)).pairs
    array = tmp_path / "p.json"
    array.write_text(json.dumps(IMPLICIT_TEXT_RECORDS, indent=2))
    as_array = read_pair_file(array).pairs

    def content(pairs):
        return [(p.conversation, p.chosen, p.rejected) for p in pairs]

    assert content(plain) == content(zipped) == content(as_array) and len(plain) == 2


def test_pairs_with_identical_replies_are_dropped_and_counted(tmp_path):
    same = {"chosen": hh("Q", "A"), "rejected": hh("Q", "A")}
    empty = {"chosen": hh("Q", "A"), "rejected": hh("Q", "")}
    read = read_pair_file(write_jsonl(tmp_path / "p.jsonl", [same, *IMPLICIT_TEXT_RECORDS, same, empty]))
    assert (read.records, len(read.pairs), read.identical, read.unusable) == (5, 2, 2, 1)


def test_identical_pairs_in_two_files_train_once_and_the_repeat_is_counted(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", IMPLICIT_TEXT_RECORDS)
    write_jsonl(tmp_path / "b.jsonl.gz", [IMPLICIT_TEXT_RECORDS[1], {"chosen": hh("X", "y"), "rejected": hh("X", "z")}])
    data = load_reward_data([tmp_path])
    assert len(data.train_only_pairs) == 3
    assert [(row["pairs"], row["duplicates"]) for row in data.files] == [(2, 0), (1, 1)]


def test_a_folder_reads_its_data_files_sorted_without_manifests_subfolders_or_other_files(tmp_path):
    for name in ("b.jsonl.gz", "a.json", "c.jsonl", "d.json.gz"):
        write_jsonl(tmp_path / name, IMPLICIT_TEXT_RECORDS)
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "c.jsonl.manifest.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "e.jsonl", IMPLICIT_TEXT_RECORDS)
    files = data_files([tmp_path, tmp_path / "c.jsonl"])
    assert [file.name for file in files] == ["a.json", "b.jsonl.gz", "c.jsonl", "d.json.gz"]
    listing = "".join(f"{file_sha256(file)}  {file.name}\n" for file in files)
    assert source_sha256(tmp_path) == hashlib.sha256(listing.encode()).hexdigest()
    assert source_sha256(files[0]) == file_sha256(files[0])


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"question": "q", "answer": "a"}], r"unknown\.jsonl:1: unknown layout"),
        (["just a string"], r"unknown\.jsonl:1: unknown layout"),
        ([{"chosen": "a", "rejected": ["b"]}], "unknown layout"),
        ([IMPLICIT_TEXT_RECORDS[0], {"message_id": "m", "text": "t"}], "mix layouts"),
        ([], "an empty file"),
    ],
)
def test_a_file_of_unknown_mixed_or_no_layout_is_refused_naming_it(tmp_path, records, message):
    path = write_jsonl(tmp_path / "unknown.jsonl", records)
    with pytest.raises(PairFileError, match=message):
        detect_layout(path)
    with pytest.raises(PairFileError, match=message):
        load_reward_data([path])


def test_a_pair_file_without_usable_pairs_is_refused_with_what_was_dropped(tmp_path):
    path = write_jsonl(tmp_path / "same.jsonl", [{"chosen": hh("Q", "A"), "rejected": hh("Q", "A")}] * 3)
    with pytest.raises(PairFileError, match=r"same\.jsonl: no usable preference pairs \(3 records: 3 with identical"):
        read_pair_file(path)


def test_a_later_record_of_another_layout_or_an_unknown_role_is_refused_with_its_line(tmp_path):
    later = write_jsonl(tmp_path / "later.jsonl", [*IMPLICIT_TEXT_RECORDS * 3, {"prompt": "p", "chosen": "a",
                                                                                  "rejected": "b"}])
    with pytest.raises(PairFileError, match=r"later\.jsonl:7: this record does not have the file's layout"):
        read_pair_file(later)
    role = write_jsonl(tmp_path / "role.jsonl", [{"chosen": [{"role": "robot", "content": "x"}],
                                                  "rejected": [{"role": "robot", "content": "y"}]}])
    with pytest.raises(PairFileError, match=r"role\.jsonl:1: unknown role 'robot'"):
        read_pair_file(role)


def test_missing_paths_and_folders_without_data_files_are_refused(tmp_path):
    with pytest.raises(PairFileError, match="no export or pair file or folder at"):
        data_files([tmp_path / "nowhere.jsonl"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairFileError, match="a folder without any .jsonl"):
        data_files([tmp_path / "empty"])


def test_an_oasst_export_is_not_read_as_a_pair_file(tmp_path):
    export = tmp_path / "export.jsonl"
    write_synthetic_export(export, trees=3, seed=1)
    assert detect_layout(export) == OASST
    with pytest.raises(PairFileError, match="an oasst export, not a preference-pair file"):
        read_pair_file(export)


def _export_and_pairs(tmp_path: Path) -> tuple[Path, Path]:
    export = tmp_path / "export.jsonl"
    write_synthetic_export(export, trees=20, seed=1)
    pairs = write_jsonl(tmp_path / "pairs.jsonl.gz", [
        {"chosen": hh(f"question {i}", f"good {i}"), "rejected": hh(f"question {i}", f"bad {i}")} for i in range(7)
    ])
    return export, pairs


def test_pair_file_pairs_train_only_and_held_out_trees_stay_oasst(tmp_path):
    export, pairs = _export_and_pairs(tmp_path)
    split = training_split([export, pairs], eval_fraction=0.25, seed=0)
    oasst_only = training_split([export], eval_fraction=0.25, seed=0)
    assert split.eval_pairs == oasst_only.eval_pairs and split.eval_pairs
    assert all(not pair.tree_id.startswith("pairs:") for pair in split.eval_pairs)
    assert len(split.train_pairs) == len(oasst_only.train_pairs) + 7
    assert split.train_stats["pairs"] == oasst_only.train_stats["pairs"] + 7
    assert split.train_stats["trees"] == oasst_only.train_stats["trees"] + 7
    assert split.data["eval_from"] == "held-out trees of --data"
    assert [(row["layout"], row["role"], row["pairs"]) for row in split.data["files"]] == [
        (OASST, "train", 60), (IMPLICIT_TEXT, "train", 7)
    ]
    assert split.data["sha256"] == file_sha256(export) and split.data["file"] == str(export.resolve())


def test_eval_data_files_are_the_evaluation_set_and_leave_training(tmp_path):
    export, pairs = _export_and_pairs(tmp_path)
    other = tmp_path / "other.jsonl"
    write_synthetic_export(other, trees=5, seed=9)  # the same tree ids t0..t4 as the training export
    split = training_split([export, pairs], eval_sources=[other, pairs], eval_fraction=0.25, seed=0)
    eval_groups = load_groups(other)
    assert split.data["eval_from"] == "--eval-data"
    assert len(split.eval_pairs) == 5 * 3 + 7
    assert split.data["trees_left_out_as_eval"] == 5
    assert len(split.train_pairs) == 15 * 3  # 20 trees less the 5 evaluated; the 7 pairs are evaluation pairs now
    assert not {pair.tree_id for pair in split.train_pairs} & {group.tree_id for group in eval_groups}
    assert [row["role"] for row in split.data["files"]] == ["train", "train", "eval", "eval"]


def test_a_split_with_nothing_to_train_on_is_refused(tmp_path):
    export = tmp_path / "export.jsonl"
    write_synthetic_export(export, trees=2, seed=1)
    with pytest.raises(PairFileError, match="no ranked replies or preference pairs to train on"):
        training_split([export], eval_sources=[export], eval_fraction=0.1, seed=0)


needs_shared_data = pytest.mark.skipif(not (HH / "helpful-online-test.jsonl.gz").is_file(),
                                       reason=f"shared data missing: {HH}")


@needs_shared_data
def test_the_shared_hh_split_reads_with_its_counted_drops():
    read = read_pair_file(HH / "helpful-online-test.jsonl.gz")
    assert (read.layout, read.records, len(read.pairs), read.identical, read.unusable) == (
        IMPLICIT_TEXT, 1137, 1132, 2, 3
    )
    assert all(pair.conversation[-1].role == "prompter" for pair in read.pairs)


TURN_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda text: text.strip() == text and "\n\n" not in text and "Human:" not in text and "Assistant:" not in text
)


@given(st.lists(TURN_TEXT, min_size=1, max_size=6).map(lambda texts: texts[: (len(texts) - 1) // 2 * 2 + 1]),
       TURN_TEXT, TURN_TEXT)
def test_hh_text_gives_back_the_conversation_and_both_replies(turn_texts, chosen, rejected):
    record = {"chosen": hh(*turn_texts, chosen), "rejected": hh(*turn_texts, rejected)}
    conversation = tuple(
        Turn("prompter" if i % 2 == 0 else "assistant", text) for i, text in enumerate(turn_texts)
    )
    assert turns_from_text(hh(*turn_texts)) == conversation
    assert pair_parts(record, IMPLICIT_TEXT, "x") == (conversation, chosen, rejected)


@needs_shared_data
def test_the_shared_trees_mixed_with_an_hh_split_keep_their_held_out_pairs():
    trees = HH.parent / "oasst_en_100_trees.jsonl"
    hh_split = HH / "helpful-online-test.jsonl.gz"
    mixed = training_split([trees, hh_split], eval_fraction=0.1, seed=42)
    alone = training_split([trees], eval_fraction=0.1, seed=42)
    assert mixed.eval_pairs == alone.eval_pairs and len(alone.eval_pairs) == 72
    assert len(mixed.train_pairs) == len(alone.train_pairs) + 1132 == 608 + 1132
