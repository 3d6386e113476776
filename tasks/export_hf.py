"""The Hugging Face release format: a folder of Parquet files with the public oasst1 release's columns
and types, split into train and validation by tree from a seed, with a dataset card (README.md) and
the export's manifest.

Rows come from the tree export (tasks.export, either engine: same selection, switches and
anonymisation), one message per row, depth first. pyarrow only: `datasets` is for training and
tests and is never imported by the web path.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from django.utils import timezone

from tasks.export import (
    TREE_CHUNK_SIZE,
    ExportFilters,
    counted_lines,
    export_manifest,
    file_sha256,
    filters_json,
    write_manifest,
)

HF_FORMAT = "hf"
SPLITS = ("train", "validation")
DEFAULT_SPLIT_SEED = 42
DEFAULT_VALIDATION_FRACTION = 0.05  # the public release's share
LICENSE = "apache-2.0"  # the public release's licence
MANIFEST_NAME = "manifest.json"
SEED_SOURCES = {"option": "chosen for this export", "settings": "the operator's OASST_EXPORT_ANONYMIZE_SEED",
                "random": "random: this release cannot be linked to another"}
ROW_BATCH = 1000  # rows written to Parquet at once
DETOXIFY = ("toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")

SCHEMA = pa.schema([
    *((name, pa.string()) for name in ("message_id", "parent_id", "user_id", "created_date", "text", "role",
                                        "lang")),
    ("review_count", pa.int32()),
    ("review_result", pa.bool_()),
    ("deleted", pa.bool_()),
    ("rank", pa.int32()),
    ("synthetic", pa.bool_()),
    ("model_name", pa.string()),
    ("detoxify", pa.struct([(name, pa.float64()) for name in DETOXIFY])),
    ("message_tree_id", pa.string()),
    ("tree_state", pa.string()),
    # the public release's `sequence` of {name, count}: a struct of lists
    ("emojis", pa.struct([("name", pa.list_(pa.string())), ("count", pa.list_(pa.int32()))])),
    ("labels", pa.struct([("name", pa.list_(pa.string())), ("value", pa.list_(pa.float64())),
                          ("count", pa.list_(pa.int32()))])),
])

# The dataset card's features, as the public release's card writes them (dataset_info.features).
_YAML_TYPES = {pa.string(): "string", pa.int32(): "int32", pa.bool_(): "bool", pa.float64(): "float64"}


def _yaml_feature(name: str, kind: pa.DataType) -> dict:
    if pa.types.is_struct(kind) and all(pa.types.is_list(child.type) for child in kind):
        return {"name": name, "sequence": [{"name": child.name, "dtype": _YAML_TYPES[child.type.value_type]}
                                           for child in kind]}
    if pa.types.is_struct(kind):
        return {"name": name, "struct": [_yaml_feature(child.name, child.type) for child in kind]}
    return {"name": name, "dtype": _YAML_TYPES[kind]}


CARD_FEATURES = [_yaml_feature(column.name, column.type) for column in SCHEMA]

CITATION = """@misc{kopf2023openassistant,
  title = {OpenAssistant Conversations -- Democratizing Large Language Model Alignment},
  author = {Andreas K\\"opf and Yannic Kilcher and Dimitri von R\\"utte and Sotiris Anagnostidis and Zhi-Rui Tam and
            Keith Stevens and Abdullah Barhoum and Nguyen Minh Duc and Oliver Stanley and Rich\\'ard Nagyfi and
            Shahul ES and Sameer Suri and David Glushkov and Arnav Dantuluri and Andrew Maguire and
            Christoph Schuhmann and Huu Nguyen and Alexander Mattick},
  year = {2023},
  eprint = {2304.07327},
  archivePrefix = {arXiv},
  primaryClass = {cs.CL},
}"""


@dataclass
class SplitCounts:
    trees: int = 0
    messages: int = 0
    languages: Counter = field(default_factory=Counter)


@dataclass
class HFExportResult:
    path: str
    trees: int = 0
    messages: int = 0
    splits: dict[str, SplitCounts] = field(default_factory=dict)
    manifest_path: str = ""


def split_file(split: str) -> str:
    return f"data/{split}-00000-of-00001.parquet"


def split_of(tree_id: str, *, seed: int, validation_fraction: float) -> str:
    """The split of a tree: a seeded hash of its id, so every message of a tree lands in the same split,
    the same seed gives the same split, and no tree list is held in memory."""
    digest = hashlib.sha256(f"{seed}:{tree_id}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8]) / 2**64 < validation_fraction else "train"


def _column_wise(values: dict | None, *, with_value: bool) -> dict | None:
    if not values:
        return None
    if with_value:
        return {"name": list(values), "value": [item["value"] for item in values.values()],
                "count": [item["count"] for item in values.values()]}
    return {"name": list(values), "count": list(values.values())}


def tree_rows(tree: dict) -> Iterator[dict]:
    """The messages of an exported tree as rows of the release, depth first (the public release's order)."""
    stack = [(tree["prompt"], None)]
    while stack:
        node, parent_id = stack.pop()
        yield {
            "message_id": node["message_id"], "parent_id": node.get("parent_id", parent_id),
            "user_id": node.get("user_id"), "created_date": node.get("created_date"), "text": node["text"],
            "role": node["role"], "lang": node.get("lang"), "review_count": node.get("review_count"),
            "review_result": node.get("review_result"), "deleted": node.get("deleted"), "rank": node.get("rank"),
            "synthetic": node.get("synthetic"), "model_name": node.get("model_name"), "detoxify": None,
            "message_tree_id": tree["message_tree_id"], "tree_state": tree["tree_state"],
            "emojis": _column_wise(node.get("emojis"), with_value=False),
            "labels": _column_wise(node.get("labels"), with_value=True),
        }
        stack.extend((reply, node["message_id"]) for reply in reversed(node.get("replies") or ()))


def check_hf_export(*, out_dir: str | Path, validation_fraction: float, force: bool, filters: ExportFilters) -> None:
    """Refuse what the release cannot be written as, before anything is read or written."""
    out_dir = Path(out_dir)
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"The validation fraction must be at least 0 and below 1, not {validation_fraction}.")
    if filters.events:
        raise ValueError("The hf format has no events column; leave out --events.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; the hf format writes a folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ValueError(f"{out_dir} is not empty; choose an empty or new folder, or --force to replace it.")


def export_hf(*, out_dir: str | Path, filters: ExportFilters, anonymize_seed: str | None = None,
              seed_source: str = "option", split_seed: int = DEFAULT_SPLIT_SEED,
              validation_fraction: float = DEFAULT_VALIDATION_FRACTION, force: bool = False,
              progress: Callable[[int], None] | None = None, engine: str = "auto",
              chunk_size: int = TREE_CHUNK_SIZE) -> HFExportResult:
    """Write the release to OUT_DIR: data/{train,validation}-00000-of-00001.parquet, README.md (the
    dataset card) and manifest.json. Written in a temporary folder beside OUT_DIR, then renamed into
    place: a failed export leaves OUT_DIR as it was. Labels are always included (the release has them)."""
    out_dir = Path(out_dir)
    check_hf_export(out_dir=out_dir, validation_fraction=validation_fraction, force=force, filters=filters)
    filters = replace(filters, labels=True)
    lines = counted_lines(filters=filters, fmt="trees", anonymize_seed=anonymize_seed, engine=engine,
                          chunk_size=chunk_size)
    first = next(lines, None)  # checks the engine before a file is written
    if first is None:  # `datasets` cannot load a release without rows
        raise ValueError("No tree matches the filters: nothing to release, nothing written.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        started = timezone.now()
        result = HFExportResult(path=str(out_dir), splits={split: SplitCounts() for split in SPLITS})
        (work / "data").mkdir()
        writers = {split: pq.ParquetWriter(work / split_file(split), SCHEMA) for split in SPLITS}
        pending: dict[str, list[dict]] = {split: [] for split in SPLITS}
        try:
            for line, message_count, _ in chain([first], lines):
                tree = json.loads(line)
                split = split_of(tree["message_tree_id"], seed=split_seed, validation_fraction=validation_fraction)
                counts = result.splits[split]
                counts.trees += 1
                counts.messages += message_count
                rows = list(tree_rows(tree))
                counts.languages.update(row["lang"] or "und" for row in rows)
                pending[split].extend(rows)
                if len(pending[split]) >= ROW_BATCH:
                    writers[split].write_table(pa.Table.from_pylist(pending[split], schema=SCHEMA))
                    pending[split] = []
                if progress:
                    progress(message_count)
            for split, rows in pending.items():
                if rows:  # an empty row group makes `datasets` fail; an empty split is a file without one
                    writers[split].write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
        finally:
            for writer in writers.values():
                writer.close()
        result.trees = sum(counts.trees for counts in result.splits.values())
        result.messages = sum(counts.messages for counts in result.splits.values())
        for split in SPLITS:
            if not result.splits[split].trees:  # `datasets` refuses a split without rows: no file, no split
                (work / split_file(split)).unlink()
                del result.splits[split]
        files = [{"file": split_file(split), "split": split, "trees": counts.trees, "rows": counts.messages,
                  "sha256": file_sha256(work / split_file(split))} for split, counts in result.splits.items()]
        listing = "".join(f"{entry['sha256']}  {entry['file']}\n" for entry in files)
        described = replace(filters, tree_ids=())  # a selection's real tree ids stay out of the release
        selected = {"trees_selected": len(filters.tree_ids)} if filters.tree_ids else {}
        manifest = export_manifest(
            file="data/", fmt=HF_FORMAT, trees=result.trees, messages=result.messages, filters=described,
            anonymize_seed=anonymize_seed, seed_source=seed_source, started=started,
            sha256=hashlib.sha256(listing.encode()).hexdigest(),  # of the sha256sum lines of the files
            split_seed=split_seed, validation_fraction=validation_fraction, **selected, files=files)
        write_manifest(work / MANIFEST_NAME, manifest)
        (work / "README.md").write_text(dataset_card(result, filters=filters, anonymize_seed=anonymize_seed,
                                                     seed_source=seed_source, split_seed=split_seed,
                                                     validation_fraction=validation_fraction), encoding="utf-8")
        _move_into_place(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result.manifest_path = str(out_dir / MANIFEST_NAME)
    return result


def _move_into_place(work: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        work.rename(out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    out_dir.rename(old / out_dir.name)
    work.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def dataset_card(result: HFExportResult, *, filters: ExportFilters, anonymize_seed: str | None, seed_source: str,
                 split_seed: int, validation_fraction: float) -> str:
    """README.md: the YAML front matter the Hub reads (licence, languages, files, features, split sizes),
    then what a reader needs: counts, languages, licence, filters, anonymisation, loading, citation."""
    languages = Counter()
    for counts in result.splits.values():
        languages.update(counts.languages)
    front = {
        "license": LICENSE,
        "language": sorted(languages),
        "tags": ["human-feedback"],
        "pretty_name": "OpenAssistant Conversations (OASST export)",
        "configs": [{"config_name": "default",
                     "data_files": [{"split": split, "path": split_file(split)} for split in result.splits]}],
        "dataset_info": {"features": CARD_FEATURES,
                         "splits": [{"name": split, "num_examples": counts.messages}
                                    for split, counts in result.splits.items()]},
    }
    split_lines = "\n".join(f"| {split} | {result.splits[split].trees if split in result.splits else 0} | "
                            f"{result.splits[split].messages if split in result.splits else 0} |" for split in SPLITS)
    language_lines = "\n".join(f"- {lang}: {count}" for lang, count in languages.most_common()) or "- (none)"
    empty_validation = ("\nThe validation split is empty (no file, no split): this export has too few trees "
                        "for the fraction asked.\n" if "validation" not in result.splits else "")
    chosen = {key: value for key, value in filters_json(replace(filters, tree_ids=())).items()
              if value not in (None, [], False)}
    if filters.tree_ids:
        chosen["tree_ids"] = f"{len(filters.tree_ids)} trees chosen by hand"
    filter_lines = "\n".join(f"- `{key}`: {', '.join(map(str, value)) if isinstance(value, list) else value}"
                             for key, value in chosen.items())
    anonymity = (f"Every id (message, parent, user, tree) is a seeded HMAC of the real one, stable within this "
                 f"release; the seed ({SEED_SOURCES.get(seed_source, seed_source)}) is never written down."
                 if anonymize_seed is not None else
                 "The ids are the platform's real ids: an internal export, never to be published.")
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---

# OpenAssistant Conversations (OASST export)

Conversation trees exported from an OASST deployment in the format of the public oasst1 release: one
message per row, depth first, with the release's columns and types. Whole trees are split into
`train` and `validation` (no tree in both) by a seeded hash of the tree id (seed {split_seed},
validation fraction {validation_fraction}).

| split | trees | messages |
|---|---|---|
{split_lines}
{empty_validation}
## Languages (messages)

{language_lines}

## Licence

{LICENSE}

## Filters

{filter_lines}

Deleted, spam and synthetic messages are left out unless a switch above includes them; a message left
out takes its replies with it. `detoxify` is empty: this platform does not score toxicity.

## Anonymisation

{anonymity}

## Loading

```python
from datasets import load_dataset

dataset = load_dataset("parquet", data_dir="path/to/this/folder")
train, validation = dataset["train"], dataset["validation"]
```

`manage.py import_trees path/to/this/folder` reads it back; the training commands take the folder as
`--data`. `manifest.json` lists the files with their checksums.

## Citation

```bibtex
{CITATION}
```
"""


def is_hf_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "README.md").is_file() and any((path / "data").glob("*.parquet"))


def hf_parquet_files(folder: str | Path) -> list[Path]:
    """The Parquet files of a release folder, by name; a clear error when it is not one."""
    folder = Path(folder)
    if not is_hf_folder(folder):
        raise FileNotFoundError(f"{folder}: not a Hugging Face export folder (README.md and data/*.parquet)")
    return sorted((folder / "data").glob("*.parquet"))


def hf_lines(folder: str | Path) -> Iterator[str]:
    """The release's rows as the JSON lines of Hugging Face flat rows the importer reads (empty fields left
    out, as exports leave them out; detoxify, which the platform does not store, too)."""
    for path in hf_parquet_files(folder):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_BATCH):
            for row in batch.to_pylist():
                yield json.dumps({key: value for key, value in row.items()
                                  if value is not None and key != "detoxify"}, ensure_ascii=False) + "\n"


def export_hf_zip(*, filters: ExportFilters, anonymize_seed: str | None, split_seed: int = DEFAULT_SPLIT_SEED,
                  validation_fraction: float = DEFAULT_VALIDATION_FRACTION):
    """The release as a zip (its folder's files under `oasst-hf/`), in an unnamed temporary file open for
    reading: a download streams it and it vanishes when closed."""
    with tempfile.TemporaryDirectory(prefix="oasst-hf-") as scratch:
        folder = Path(scratch) / "oasst-hf"
        export_hf(out_dir=folder, filters=filters, anonymize_seed=anonymize_seed, split_seed=split_seed,
                  validation_fraction=validation_fraction)
        archive = tempfile.TemporaryFile()  # noqa: SIM115 (the response closes it)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zipped.write(path, path.relative_to(folder.parent).as_posix())
        archive.seek(0)
        return archive
