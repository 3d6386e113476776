"""Reads preference-pair files in TRL's standard preference format into the reward model's preference pairs.

Layouts, detected per file from its first records (JSON Lines or one JSON array, gzip when the name ends in ``.gz``):

- implicit prompt, text: ``{"chosen": "...", "rejected": "..."}``, each a whole conversation laid out as
  ``\\n\\nHuman: ...\\n\\nAssistant: ...`` (Anthropic's HH-RLHF); the conversation is the shared text up to its last
  ``\\n\\nAssistant:``, the replies are what follows it;
- implicit prompt, conversational: ``chosen`` and ``rejected`` as lists of ``{"role", "content"}`` messages that share
  every message but a final assistant one;
- explicit prompt: ``{"prompt", "chosen", "rejected"}``, each a string or a list of messages.

Each pair gets a synthetic tree id of its own (``pairs:<file sha256 prefix>:<line>``), so tree-based code treats it as
a tree of one pair. Pairs whose replies are identical teach nothing and are dropped, as are records with no shared
conversation ending in an assistant reply; both are counted.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from training.data import (
    ComparisonGroup,
    DatasetStats,
    PreferencePair,
    Turn,
    dataset_stats,
    file_sha256,
    hf_release_files,
    load_groups,
    numbered_records,
    preference_pairs,
    split_by_tree,
)

OASST = "oasst export"
IMPLICIT_TEXT = "pairs, implicit prompt, text"
IMPLICIT_CONVERSATIONAL = "pairs, implicit prompt, conversational"
EXPLICIT = "pairs, explicit prompt"
PAIR_LAYOUTS = (IMPLICIT_TEXT, IMPLICIT_CONVERSATIONAL, EXPLICIT)
DETECTION_RECORDS = 5

# a system message is text the asking side wrote; the reward model's conversations know only these two roles
ROLES = {"user": "prompter", "human": "prompter", "prompter": "prompter", "system": "prompter"} | {
    "assistant": "assistant"
}
TEXT_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
FINAL_ASSISTANT_MARKER = "\n\nAssistant:"


class PairFileError(ValueError):
    """A file that cannot be read as training data: unknown layout, a malformed record, no usable pair."""


@dataclass
class PairFileRead:
    path: str
    sha256: str
    layout: str
    records: int = 0
    pairs: list[PreferencePair] = field(default_factory=list)
    identical: int = 0
    unusable: int = 0


def record_layout(record: object) -> str | None:
    """The layout one record has, or None when it has none we read."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("prompt"), dict) or "message_id" in record:
        return OASST
    if "chosen" not in record or "rejected" not in record:
        return None
    chosen, rejected = record["chosen"], record["rejected"]
    if "prompt" in record:
        return EXPLICIT
    if isinstance(chosen, str) and isinstance(rejected, str):
        return IMPLICIT_TEXT
    if isinstance(chosen, list) and isinstance(rejected, list):
        return IMPLICIT_CONVERSATIONAL
    return None


def detect_layout(path: str | Path) -> str:
    """The layout of a file, from its first records; a clear error naming the file when it is unknown or mixed."""
    first = list(islice(numbered_records(path), DETECTION_RECORDS))
    if not first:
        raise PairFileError(f"{path}: an empty file (no export trees, messages or preference pairs)")
    layouts = {record_layout(record) for _, record in first}
    if None in layouts:
        line, record = next((line, record) for line, record in first if record_layout(record) is None)
        keys = sorted(record)[:8] if isinstance(record, dict) else type(record).__name__
        raise PairFileError(
            f"{path}:{line}: unknown layout ({keys}); expected oasst trees or messages, or preference pairs with "
            '"chosen" and "rejected" (and optionally "prompt")'
        )
    if len(layouts) > 1:
        raise PairFileError(f"{path}: its first records mix layouts ({', '.join(sorted(layouts))})")
    return layouts.pop()


def _turns_from_messages(messages: object, where: str) -> tuple[Turn, ...]:
    if not isinstance(messages, list):
        raise PairFileError(f"{where}: expected a list of {{role, content}} messages")
    turns = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise PairFileError(f"{where}: a message without a text content")
        role = ROLES.get(str(message.get("role", "")).lower())
        if role is None:
            raise PairFileError(f"{where}: unknown role {message.get('role')!r} (user, assistant or system)")
        turns.append(Turn(role, message["content"].strip()))
    return tuple(turns)


def turns_from_text(text: str) -> tuple[Turn, ...]:
    """``\\n\\nHuman: ...\\n\\nAssistant: ...`` as turns; text without those markers is one prompter turn."""
    pieces = TEXT_TURN.split(text)
    turns = [Turn("prompter", pieces[0].strip())] if pieces[0].strip() else []
    for speaker, body in zip(pieces[1::2], pieces[2::2], strict=True):
        turns.append(Turn("prompter" if speaker == "Human" else "assistant", body.strip()))
    return tuple(turns)


def _split_text_pair(chosen: str, rejected: str) -> tuple[tuple[Turn, ...], str, str] | None:
    """The shared conversation up to the last assistant marker both texts share, and each final reply after it."""
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(FINAL_ASSISTANT_MARKER, 0, shared)
    if cut < 0:
        return None
    start = cut + len(FINAL_ASSISTANT_MARKER)
    return turns_from_text(chosen[:cut]), chosen[start:].strip(), rejected[start:].strip()


def _split_message_pair(chosen: tuple[Turn, ...], rejected: tuple[Turn, ...]):
    if len(chosen) < 2 or chosen[:-1] != rejected[:-1] or len(chosen) != len(rejected):
        return None
    if chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
        return None
    return chosen[:-1], chosen[-1].text, rejected[-1].text


def _reply_text(value: object, where: str) -> str | None:
    if isinstance(value, str):
        return value.strip().removeprefix("Assistant:").strip()
    turns = _turns_from_messages(value, where)
    if len(turns) != 1 or turns[0].role != "assistant":
        return None
    return turns[0].text


def _explicit_prompt(value: object, where: str) -> tuple[Turn, ...]:
    if isinstance(value, str):
        text = value.rstrip()
        if text.endswith(FINAL_ASSISTANT_MARKER.strip()):
            text = text[: -len(FINAL_ASSISTANT_MARKER.strip())]
        return turns_from_text(text)
    return _turns_from_messages(value, where)


def pair_parts(record: dict, layout: str, where: str) -> tuple[tuple[Turn, ...], str, str] | None:
    """(conversation, chosen reply, rejected reply) of a record, or None when it holds no usable pair."""
    if record_layout(record) != layout:
        raise PairFileError(f"{where}: this record does not have the file's layout ({layout})")
    if layout == IMPLICIT_TEXT:
        return _split_text_pair(record["chosen"], record["rejected"])
    if layout == IMPLICIT_CONVERSATIONAL:
        return _split_message_pair(
            _turns_from_messages(record["chosen"], where), _turns_from_messages(record["rejected"], where)
        )
    conversation = _explicit_prompt(record["prompt"], where)
    chosen, rejected = _reply_text(record["chosen"], where), _reply_text(record["rejected"], where)
    if chosen is None or rejected is None:
        return None
    return conversation, chosen, rejected


def read_pair_file(path: str | Path, *, layout: str | None = None) -> PairFileRead:
    """Every usable pair of a preference-pair file; refuses a file with none, naming it and what was dropped."""
    layout = layout or detect_layout(path)
    if layout not in PAIR_LAYOUTS:
        raise PairFileError(f"{path}: an oasst export, not a preference-pair file")
    sha256 = file_sha256(path)
    read = PairFileRead(path=str(path), sha256=sha256, layout=layout)
    for line, record in numbered_records(path):
        read.records += 1
        where = f"{path}:{line}"
        parts = pair_parts(record, layout, where) if isinstance(record, dict) else None
        if parts is None:
            if not isinstance(record, dict):
                raise PairFileError(f"{where}: not a JSON object")
            read.unusable += 1
            continue
        conversation, chosen, rejected = parts
        if not conversation or not chosen or not rejected:
            read.unusable += 1
            continue
        if chosen == rejected:
            read.identical += 1
            continue
        lang = record.get("lang")
        read.pairs.append(
            PreferencePair(
                tree_id=f"pairs:{sha256[:12]}:{line}",
                lang=lang if isinstance(lang, str) and lang else "und",
                conversation=conversation,
                chosen=chosen,
                rejected=rejected,
                rank_gap=1,
            )
        )
    if not read.pairs:
        raise PairFileError(
            f"{path}: no usable preference pairs ({read.records} records: {read.identical} with identical replies, "
            f"{read.unusable} without a shared conversation and a final assistant reply each)"
        )
    return read


def pair_key(pair: PreferencePair) -> tuple:
    """What makes two pairs the same comparison, wherever they were read."""
    return (pair.conversation, pair.chosen, pair.rejected)


def without_duplicates(pairs: Sequence[PreferencePair], *, seen: set | None = None) -> tuple[list[PreferencePair], int]:
    """The pairs in order with repeats (and any already in ``seen``) removed, and how many were removed."""
    seen = set() if seen is None else seen
    kept = []
    for pair in pairs:
        key = pair_key(pair)
        if key not in seen:
            seen.add(key)
            kept.append(pair)
    return kept, len(pairs) - len(kept)


DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


def _is_manifest(path: Path) -> bool:
    return path.name == "manifest.json" or path.name.endswith(".manifest.json")


def data_files(sources: Sequence[str | Path]) -> list[Path]:
    """The files behind --data sources: a file as given, a Hugging Face release folder as one source (all its
    splits), another folder as its data files sorted by name (not its subfolders, not an export's manifest); a file
    named twice is read once."""
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if hf_release_files(path):
            files.append(path)
        elif path.is_dir():
            found = sorted(
                child for child in path.iterdir()
                if child.is_file() and child.name.endswith(DATA_SUFFIXES) and not _is_manifest(child)
            )
            if not found:
                raise PairFileError(f"{path}: a folder without any {', '.join(DATA_SUFFIXES)} file")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise PairFileError(f"no export or pair file or folder at {path}")
    unique = {file.resolve(): file for file in reversed(files)}
    return [file for file in files if unique[file.resolve()] is file]


def source_sha256(source: str | Path) -> str:
    """A file's sha256; for a folder, the sha256 of its ``<sha256>  <name>`` lines (what ``sha256sum`` prints)."""
    path = Path(source)
    if path.is_file() or hf_release_files(path):
        return file_sha256(path)
    listing = "".join(f"{file_sha256(file)}  {file.name}\n" for file in data_files([path]))
    return hashlib.sha256(listing.encode()).hexdigest()


def check_sources(sources: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """Each file behind the sources with its layout, read from its first records; refuses unknown layouts."""
    return [(file, detect_layout(file)) for file in data_files(sources)]


def pair_stats(pairs: Sequence[PreferencePair]) -> DatasetStats:
    """Counts of pairs read from pair files, where each pair is a tree and a group of its own."""
    languages = Counter(pair.lang for pair in pairs)
    trees = len({pair.tree_id for pair in pairs})
    return DatasetStats(trees=trees, groups=trees, pairs=len(pairs), languages=dict(sorted(languages.items())))


def merged_stats(*parts: DatasetStats) -> dict:
    languages: Counter[str] = Counter()
    for part in parts:
        languages.update(part.languages)
    return DatasetStats(
        trees=sum(part.trees for part in parts),
        groups=sum(part.groups for part in parts),
        pairs=sum(part.pairs for part in parts),
        languages=dict(sorted(languages.items())),
    ).as_dict()


@dataclass
class RewardSplit:
    train_pairs: list[PreferencePair]
    eval_pairs: list[PreferencePair]
    train_stats: dict
    eval_stats: dict
    eval_from: str
    data: dict = field(default_factory=dict)  # the metrics' "data": sources, checksums, counts
    reward_data: RewardData | None = None  # what the split was made from (cross-validation folds it again)


@dataclass
class RewardData:
    """What --data and --eval-data hold: oasst groups (split by tree), train-only pairs from pair files, and
    the --eval-data pairs (None: held-out oasst trees are the evaluation set)."""

    groups: list[ComparisonGroup]
    train_only_pairs: list[PreferencePair]
    eval_groups: list[ComparisonGroup]
    eval_only_pairs: list[PreferencePair]
    evaluate_on_files: bool
    files: list[dict]
    trees_left_out: int = 0

    def split(self, *, eval_fraction: float, seed: int) -> RewardSplit:
        """Training and evaluation pairs; pair-file pairs always train, and none equal to an evaluation pair."""
        if self.evaluate_on_files:
            train_groups, eval_groups = self.groups, self.eval_groups
            eval_from = "--eval-data"
        else:
            train_groups, eval_groups = split_by_tree(self.groups, eval_fraction=eval_fraction, seed=seed)
            eval_from = "held-out trees of --data"
        eval_pairs = preference_pairs(eval_groups) + self.eval_only_pairs
        train_only, _ = without_duplicates(self.train_only_pairs, seen={pair_key(pair) for pair in eval_pairs})
        return RewardSplit(
            train_pairs=preference_pairs(train_groups) + train_only,
            eval_pairs=eval_pairs,
            train_stats=merged_stats(dataset_stats(train_groups), pair_stats(train_only)),
            eval_stats=merged_stats(dataset_stats(eval_groups), pair_stats(self.eval_only_pairs)),
            eval_from=eval_from,
        )


def _read_files(sources: Sequence[str | Path], *, role: str, seen_pairs: set) -> tuple[list, list, list[dict]]:
    """Groups of the oasst files and deduplicated pairs of the pair files behind the sources, and a row per file."""
    groups: list[ComparisonGroup] = []
    pairs: list[PreferencePair] = []
    rows: list[dict] = []
    seen_groups: set[tuple[str, str]] = set()
    for path, layout in check_sources(sources):
        row = {"path": str(path.resolve()), "role": role, "layout": layout}
        if layout == OASST:
            read = [group for group in load_groups(path) if (group.tree_id, group.parent_id) not in seen_groups]
            seen_groups.update((group.tree_id, group.parent_id) for group in read)
            if role == "eval" and not read:
                raise PairFileError(f"{path}: no ranked replies to evaluate on")
            groups.extend(read)
            row |= {"sha256": file_sha256(path), "groups": len(read), "pairs": dataset_stats(read).pairs}
        else:
            read = read_pair_file(path, layout=layout)
            kept, duplicates = without_duplicates(read.pairs, seen=seen_pairs)
            pairs.extend(kept)
            row |= {"sha256": read.sha256, "records": read.records, "pairs": len(kept), "identical": read.identical,
                    "unusable": read.unusable, "duplicates": duplicates}
        rows.append(row)
    return groups, pairs, rows


def load_reward_data(sources: Sequence[str | Path], *, eval_sources: Sequence[str | Path] = ()) -> RewardData:
    """Read every --data and --eval-data file. Training trees that are also evaluation trees are left out of training
    (``trees_left_out``), and pair-file pairs equal to an evaluation pair count as duplicates."""
    eval_seen: set = set()
    eval_groups, eval_only_pairs, eval_rows = _read_files(eval_sources, role="eval", seen_pairs=eval_seen)
    eval_trees = {group.tree_id for group in eval_groups}
    train_seen = {pair_key(pair) for pair in preference_pairs(eval_groups)} | eval_seen
    groups, train_only_pairs, train_rows = _read_files(sources, role="train", seen_pairs=train_seen)
    kept_groups = [group for group in groups if group.tree_id not in eval_trees]
    return RewardData(
        groups=kept_groups,
        train_only_pairs=train_only_pairs,
        eval_groups=eval_groups,
        eval_only_pairs=eval_only_pairs,
        evaluate_on_files=bool(eval_sources),
        files=train_rows + eval_rows,
        trees_left_out=len({group.tree_id for group in groups} & eval_trees),
    )


def evaluation_pairs(sources: Sequence[str | Path]) -> tuple[list[PreferencePair], list[dict]]:
    """Every pair of every file behind the sources (all trees of oasst files), and a row per file read."""
    groups, pairs, rows = _read_files(sources, role="eval", seen_pairs=set())
    return preference_pairs(groups) + pairs, rows


def training_split(
    sources: Sequence[str | Path], *, eval_sources: Sequence[str | Path] = (), eval_fraction: float, seed: int
) -> RewardSplit:
    """The pairs a reward model trains and is evaluated on, with the record of what was read: ``file`` and
    ``sha256`` name the first source (a folder's checksum is that of its listing), ``files`` every file read."""
    reward_data = load_reward_data(sources, eval_sources=eval_sources)
    split = reward_data.split(eval_fraction=eval_fraction, seed=seed)
    if not split.train_pairs:
        names = ", ".join(str(source) for source in sources)
        raise PairFileError(f"{names}: no ranked replies or preference pairs to train on (after the held-out trees)")
    split.data = {
        "file": str(Path(sources[0]).resolve()),
        "sha256": source_sha256(sources[0]),
        "files": reward_data.files,
        "train": split.train_stats,
        "eval": split.eval_stats,
        "eval_from": split.eval_from,
        "trees_left_out_as_eval": reward_data.trees_left_out,
    }
    split.reward_data = reward_data
    return split
