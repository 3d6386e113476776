"""Reads oasst export files into comparison groups and preference pairs for reward-model training.

Accepted inputs (JSON Lines or one JSON array, gzip when the name ends in ``.gz``): the tree format (one tree per line
with a nested ``prompt``), message files (one node per line, flat with ``parent_id`` or nested with
``replies``) and the Hugging Face release's flat rows; also Parquet files of such rows and the release folder
``export_trees --format hf`` writes (all its splits read as one source: training makes its own split by tree).
Nothing here touches the database.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import pyarrow.parquet as pq

MAX_REPLIES_PER_GROUP = 5
PARQUET_BATCH = 1000


@dataclass(frozen=True)
class Turn:
    role: str
    text: str


@dataclass(frozen=True)
class Reply:
    message_id: str
    text: str
    rank: int


@dataclass(frozen=True)
class ComparisonGroup:
    """A parent message in its conversation, and its ranked replies, best first."""

    tree_id: str
    parent_id: str
    lang: str
    conversation: tuple[Turn, ...]
    replies: tuple[Reply, ...]


@dataclass(frozen=True)
class PreferencePair:
    tree_id: str
    lang: str
    conversation: tuple[Turn, ...]
    chosen: str
    rejected: str
    rank_gap: int


@dataclass
class DatasetStats:
    trees: int = 0
    groups: int = 0
    pairs: int = 0
    languages: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"trees": self.trees, "groups": self.groups, "pairs": self.pairs, "languages": dict(self.languages)}


def open_export(path: str | Path):
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def hf_release_files(path: str | Path) -> list[Path]:
    """The Parquet files of a Hugging Face release folder (``data/*.parquet``, by name); none when it is not one."""
    path = Path(path)
    return sorted((path / "data").glob("*.parquet")) if path.is_dir() else []


def file_sha256(path: str | Path) -> str:
    """A file's sha256; for a release folder, the sha256 of its files' ``<sha256>  <name>`` lines."""
    if release_files := hf_release_files(path):
        listing = "".join(f"{file_sha256(file)}  data/{file.name}\n" for file in release_files)
        return hashlib.sha256(listing.encode()).hexdigest()
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parquet_rows(paths: Iterable[Path]) -> Iterator[dict]:
    """The rows of Parquet files, empty fields left out as the JSON exports leave them out."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
            for row in batch.to_pylist():
                yield {key: value for key, value in row.items() if value is not None}


def numbered_records(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, value) of each JSON line; a file whose text starts with ``[`` is one JSON array (items from 1);
    the rows of a Parquet file or of a release folder's files (numbered from 1 across them)."""
    if release_files := hf_release_files(path):
        yield from enumerate(parquet_rows(release_files), start=1)
        return
    if Path(path).suffix == ".parquet":
        yield from enumerate(parquet_rows([Path(path)]), start=1)
        return
    with open_export(path) as handle:
        head = handle.read(1 << 12)
        if head.lstrip().startswith("["):
            try:
                values = json.loads(head + handle.read())
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not a JSON array ({error.msg})") from error
            yield from enumerate(values, start=1)
            return
        handle.seek(0)
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not a JSON object ({error.msg})") from error


def read_records(path: str | Path) -> Iterator[dict]:
    for _, record in numbered_records(path):
        yield record


def _flatten(node: dict, tree_id: str, parent_id: str | None) -> Iterator[dict]:
    flat = {key: value for key, value in node.items() if key != "replies"}
    flat.setdefault("message_tree_id", tree_id)
    if parent_id is not None:
        flat.setdefault("parent_id", parent_id)
    yield flat
    for reply in node.get("replies") or []:
        yield from _flatten(reply, tree_id, flat["message_id"])


def read_messages(path: str | Path) -> list[dict]:
    """Every message of the file as a flat node carrying ``message_tree_id`` and ``parent_id``."""
    messages: list[dict] = []
    for record in read_records(path):
        if "prompt" in record:
            tree_id = record.get("message_tree_id") or record["prompt"]["message_id"]
            messages.extend(_flatten(record["prompt"], tree_id, None))
        elif "message_id" in record:
            tree_id = record.get("message_tree_id") or record["message_id"]
            messages.extend(_flatten(record, tree_id, record.get("parent_id")))
        else:
            raise ValueError(f"{path}: a line is neither a tree nor a message: keys {sorted(record)[:8]}")
    return messages


def _rank(message: dict) -> int | None:
    rank = message.get("rank")
    if rank is None or rank != rank:  # NaN in HF rows read through pandas-like tools
        return None
    return int(rank)


def conversation_to(message_id: str, by_id: dict[str, dict]) -> tuple[Turn, ...]:
    """The turns from the root down to the message, both included."""
    turns: list[Turn] = []
    seen: set[str] = set()
    current = by_id.get(message_id)
    while current is not None and current["message_id"] not in seen:  # a malformed file may hold a cycle
        seen.add(current["message_id"])
        turns.append(Turn(role=current.get("role", ""), text=current.get("text", "")))
        current = by_id.get(current.get("parent_id") or "")
    return tuple(reversed(turns))


def comparison_groups(messages: Iterable[dict], *, max_replies: int = MAX_REPLIES_PER_GROUP) -> list[ComparisonGroup]:
    """One group per parent with at least two ranked, non-deleted replies (best first, at most ``max_replies``)."""
    by_id = {message["message_id"]: message for message in messages}
    children: dict[str, list[dict]] = defaultdict(list)
    for message in by_id.values():
        if message.get("parent_id"):
            children[message["parent_id"]].append(message)
    groups = []
    for parent_id, replies in children.items():
        parent = by_id.get(parent_id)
        if parent is None or parent.get("deleted"):
            continue
        ranked = sorted(
            (reply for reply in replies if not reply.get("deleted") and _rank(reply) is not None),
            key=lambda reply: (_rank(reply), reply["message_id"]),
        )[:max_replies]
        if len(ranked) < 2:
            continue
        groups.append(
            ComparisonGroup(
                tree_id=parent.get("message_tree_id") or parent_id,
                parent_id=parent_id,
                lang=parent.get("lang") or ranked[0].get("lang") or "und",
                conversation=conversation_to(parent_id, by_id),
                replies=tuple(Reply(r["message_id"], r.get("text", ""), _rank(r)) for r in ranked),
            )
        )
    groups.sort(key=lambda group: (group.tree_id, group.parent_id))
    return groups


def load_groups(path: str | Path, *, max_replies: int = MAX_REPLIES_PER_GROUP) -> list[ComparisonGroup]:
    return comparison_groups(read_messages(path), max_replies=max_replies)


def held_out_trees(tree_ids: Iterable[str], *, eval_fraction: float, seed: int) -> set[str]:
    """The trees held out for evaluation: a seeded shuffle, at least one when the fraction is > 0 and there are two."""
    if not 0 <= eval_fraction < 1:
        raise ValueError("eval_fraction must be in [0, 1)")
    ordered = sorted(set(tree_ids))
    random.Random(seed).shuffle(ordered)
    eval_count = round(len(ordered) * eval_fraction)
    if eval_fraction > 0 and len(ordered) > 1:
        eval_count = min(max(eval_count, 1), len(ordered) - 1)
    return set(ordered[:eval_count])


def split_by_tree(
    groups: list[ComparisonGroup], *, eval_fraction: float, seed: int
) -> tuple[list[ComparisonGroup], list[ComparisonGroup]]:
    """Train and eval groups; every tree lies wholly on one side. At least one eval tree when the fraction is > 0."""
    eval_trees = held_out_trees((group.tree_id for group in groups), eval_fraction=eval_fraction, seed=seed)
    train = [group for group in groups if group.tree_id not in eval_trees]
    evaluation = [group for group in groups if group.tree_id in eval_trees]
    return train, evaluation


def tree_folds(tree_ids: Iterable[str], *, k: int, seed: int) -> list[set[str]]:
    """K folds of the trees for cross-validation: the seeded shuffle of ``held_out_trees``, dealt round-robin,
    so every tree lies in exactly one fold and fold sizes differ by at most one."""
    ordered = sorted(set(tree_ids))
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {k}")
    if k > len(ordered):
        raise ValueError(f"cannot make {k} folds of {len(ordered)} trees: --cv may be at most the number of trees")
    random.Random(seed).shuffle(ordered)
    return [set(ordered[fold::k]) for fold in range(k)]


def preference_pairs(groups: Iterable[ComparisonGroup]) -> list[PreferencePair]:
    """All k*(k-1)/2 (better, worse) pairs of each group's replies; the gap counts positions in the group."""
    pairs = []
    for group in groups:
        for (better_position, better), (worse_position, worse) in combinations(enumerate(group.replies), 2):
            pairs.append(
                PreferencePair(
                    tree_id=group.tree_id,
                    lang=group.lang,
                    conversation=group.conversation,
                    chosen=better.text,
                    rejected=worse.text,
                    rank_gap=worse_position - better_position,
                )
            )
    return pairs


def dataset_stats(groups: list[ComparisonGroup]) -> DatasetStats:
    pairs_per_lang: Counter[str] = Counter()
    for group in groups:
        k = len(group.replies)
        pairs_per_lang[group.lang] += k * (k - 1) // 2
    return DatasetStats(
        trees=len({group.tree_id for group in groups}),
        groups=len(groups),
        pairs=sum(pairs_per_lang.values()),
        languages=dict(sorted(pairs_per_lang.items())),
    )


@dataclass(frozen=True)
class PromptItem:
    """A conversation that ends with a prompter message: what a policy is asked to answer."""

    tree_id: str
    message_id: str
    lang: str
    conversation: tuple[Turn, ...]


PROMPT_KINDS = ("root", "all")


def prompt_items(messages: Iterable[dict], *, kind: str = "all") -> list[PromptItem]:
    """Root prompts only (``kind="root"``) or every non-deleted prompter message with its conversation prefix."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"prompt kind must be one of {', '.join(PROMPT_KINDS)}")
    by_id = {message["message_id"]: message for message in messages}

    def alive(message: dict) -> bool:
        seen: set[str] = set()
        while message is not None and message["message_id"] not in seen:  # a deleted ancestor hides the branch
            if message.get("deleted"):
                return False
            seen.add(message["message_id"])
            message = by_id.get(message.get("parent_id") or "")
        return True

    items = []
    for message in by_id.values():
        if message.get("role") != "prompter" or not (message.get("text") or "").strip():
            continue
        if kind == "root" and message.get("parent_id"):
            continue
        if not alive(message):
            continue
        items.append(
            PromptItem(
                tree_id=message.get("message_tree_id") or message["message_id"],
                message_id=message["message_id"],
                lang=message.get("lang") or "und",
                conversation=conversation_to(message["message_id"], by_id),
            )
        )
    items.sort(key=lambda item: (item.tree_id, len(item.conversation), item.message_id))
    return items


def load_prompts(path: str | Path, *, kind: str = "all") -> list[PromptItem]:
    return prompt_items(read_messages(path), kind=kind)


def split_prompts_by_tree(
    items: list[PromptItem], *, eval_fraction: float, seed: int
) -> tuple[list[PromptItem], list[PromptItem]]:
    """Train and held-out prompts; every tree lies wholly on one side, as for reward-model pairs."""
    eval_trees = held_out_trees((item.tree_id for item in items), eval_fraction=eval_fraction, seed=seed)
    return (
        [item for item in items if item.tree_id not in eval_trees],
        [item for item in items if item.tree_id in eval_trees],
    )
