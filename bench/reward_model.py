"""Reward-model speed: a training pass against TRL's RewardTrainer used directly, and scoring replies/s.

training: both trainers train the same backbone on the same tokenised preference pairs (same batch size,
learning rate, length and seed) for one pass; the table gives pairs per second. Ours adds SPEC's
0.001 * mean(r^2) term and turns TRL's default activation checkpointing off.

scoring: two sets scored by the default MiniLM backbone (its untrained head: the speed is the same) with
the algorithm before issue 14 (input order, batches of 32, no_grad) and with ``training.reward.score_replies``
(identical items once, sorted by length, batched, inference_mode); replies per second. The sets: the
assistant replies of the export with their conversations, repeated to --replies (each repeat made distinct),
and the chosen and rejected replies of --pairs ranked pairs, as an evaluation scores them.

    python bench/reward_model.py scoring [--replies 2000] [--pairs 300]
    python bench/reward_model.py training --data ../shared/data/oasst_en_100_trees.jsonl [--pairs 160]

Writes its part into bench/results/reward_model.json (the other part's figures stay).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def git_commit() -> str | None:
    """The short commit, with ``+dirty`` when tracked files have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def timed_pass(trainer_class, args_overrides: dict, *, base_model: str, dataset, tokenizer, batch_size: int,
               lr: float, max_length: int, seed: int) -> float:
    """Seconds for one training pass over the dataset."""
    from transformers import AutoModelForSequenceClassification, PrinterCallback, set_seed
    from trl import RewardConfig

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory() as folder:
        args = RewardConfig(output_dir=folder, num_train_epochs=1, learning_rate=lr,
                            per_device_train_batch_size=batch_size, max_length=max_length, use_cpu=True,
                            bf16=False, save_strategy="no", report_to="none", disable_tqdm=True, seed=seed,
                            dataloader_num_workers=0, logging_steps=1000, **args_overrides)
        trainer = trainer_class(model=model, args=args, processing_class=tokenizer, train_dataset=dataset)
        trainer.remove_callback(PrinterCallback)
        started = time.monotonic()
        trainer.train()
        return time.monotonic() - started


def score_in_input_order(model, tokenizer, items, *, reading, batch_size: int = 32) -> list[float]:
    """score_replies as it was before issue 14: batches in input order, each padded to its longest item."""
    import torch

    from training.reward import encode_reply

    model.eval()
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = [encode_reply(tokenizer, c, r, reading=reading) for c, r in items[start : start + batch_size]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            scores.extend(model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1).tolist())
    return scores


def reply_items(data: str, count: int) -> list:
    """Every live assistant reply of the export with the conversation above it, repeated to ``count`` items; a
    repeat carries its copy number (`` (copy 2)``) so that every item is distinct and is really scored."""
    from training.data import conversation_to, read_messages

    messages = read_messages(data)
    by_id = {message["message_id"]: message for message in messages}
    replies = [
        (conversation_to(message["parent_id"], by_id), message.get("text", ""))
        for message in messages
        if message.get("role") == "assistant" and not message.get("deleted") and message.get("parent_id") in by_id
    ]
    items = []
    for index in range(count):
        conversation, reply = replies[index % len(replies)]
        copy = index // len(replies)
        items.append((conversation, reply + (f" (copy {copy + 1})" if copy else "")))
    return items


def pair_items(data: str, count: int) -> list:
    """The chosen then the rejected reply of the first ``count`` ranked pairs of the export, as an evaluation
    scores them (each reply meets the others of its group in several pairs)."""
    from training.data import load_groups, preference_pairs

    pairs = preference_pairs(load_groups(data))[:count]
    return [(pair.conversation, pair.chosen) for pair in pairs] + [(pair.conversation, pair.rejected) for pair in pairs]


def timed_scoring(score, model, tokenizer, items, *, reading, batch_size: int, **extra) -> tuple[dict, list]:
    started = time.monotonic()
    scores = score(model, tokenizer, items, reading=reading, batch_size=batch_size, **extra)
    seconds = time.monotonic() - started
    row = {"items": len(items), "seconds": round(seconds, 2), "replies_per_second": round(len(items) / seconds, 1)}
    return row, scores


def bench_scoring(options) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.reward import RewardInput, RewardTrainingConfig, default_base_model, encode_reply, score_replies

    base_model = default_base_model()
    defaults = RewardTrainingConfig(data="", output="")
    reading = RewardInput(max_length=options.max_length or defaults.max_length, layout=defaults.layout)
    max_length = reading.max_length
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=1)
    replies, pairs = reply_items(options.data, options.replies), pair_items(options.data, options.pairs)
    lengths = [len(encode_reply(tokenizer, c, r, reading=reading)) for c, r in replies]
    common = {"reading": reading, "batch_size": options.batch_size}
    load_before = os.getloadavg()
    runs, differences, after_scores = {}, {}, {}
    for scenario, items in ((f"{len(replies)} distinct replies", replies),
                            (f"{len(pairs) // 2} ranked pairs (evaluation)", pairs)):
        runs[f"{scenario}: before (input order, no_grad)"], before = timed_scoring(
            score_in_input_order, model, tokenizer, items, **common)
        runs[f"{scenario}: after (deduplicated, sorted, inference_mode)"], after = timed_scoring(
            score_replies, model, tokenizer, items, **common)
        differences[scenario] = max(abs(a - b) for a, b in zip(before, after, strict=True))
        after_scores[scenario] = after
    after_replies = next(iter(after_scores.values()))
    spread = max(after_replies) - min(after_replies)
    print(f"\nscoring with MiniLM (untrained head), {reading.layout} layout, max length {max_length} (replies: mean "
          f"{sum(lengths) / len(lengths):.0f} tokens), batch {options.batch_size}, CPU ({os.cpu_count()} cores)\n")
    print(f"{'run':80} {'items':>6} {'seconds':>8} {'replies/s':>10}")
    for name, row in runs.items():
        print(f"{name:80} {row['items']:>6} {row['seconds']:>8.2f} {row['replies_per_second']:>10.1f}")
    for name, difference in differences.items():
        print(f"largest score difference, {name}: {difference:.2e} (score spread {spread:.3f})")
    return {"parameters": {"data": options.data, "replies": len(replies), "pairs": len(pairs) // 2,
                           "batch_size": options.batch_size, "max_length": max_length,
                           "input_layout": reading.layout, "mean_reply_tokens": round(sum(lengths) / len(lengths), 1),
                           "base_model": "all-MiniLM-L6-v2 (untrained head)"},
            "load_before": load_before, "runs": runs, "largest_score_differences": differences, "score_spread": spread}


def bench_training(options) -> dict:
    from transformers import AutoTokenizer
    from trl import RewardTrainer

    from training.data import load_groups, preference_pairs
    from training.reward import (
        RewardInput,
        RewardTrainingConfig,
        default_base_model,
        pairs_dataset,
        regularised_trainer_class,
    )

    defaults = RewardTrainingConfig(data="", output="")
    reading = RewardInput(max_length=options.max_length or defaults.max_length, layout=defaults.layout)
    max_length = reading.max_length
    base_model = default_base_model()
    pairs = preference_pairs(load_groups(options.data))[: options.pairs]
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    dataset = pairs_dataset(pairs, tokenizer, reading=reading)
    common = {"base_model": base_model, "dataset": dataset, "tokenizer": tokenizer, "batch_size": options.batch_size,
              "lr": options.lr, "max_length": max_length, "seed": options.seed}
    load_before = os.getloadavg()
    runs = {
        "trl RewardTrainer, defaults": timed_pass(RewardTrainer, {}, **common),
        "ours (regularised, no checkpointing)": timed_pass(
            regularised_trainer_class(),
            {"center_rewards_coefficient": None, "gradient_checkpointing": None, "activation_checkpointing": False},
            **common),
    }
    rows = {name: {"seconds": round(seconds, 2), "pairs_per_second": round(len(pairs) / seconds, 2)}
            for name, seconds in runs.items()}
    print(f"\nreward-model training pass: {len(pairs)} pairs, batch {options.batch_size}, "
          f"max length {max_length}, MiniLM, CPU ({os.cpu_count()} cores)\n")
    print(f"{'trainer':40} {'seconds':>9} {'pairs/s':>9}")
    for name, row in rows.items():
        print(f"{name:40} {row['seconds']:>9.2f} {row['pairs_per_second']:>9.2f}")
    return {"parameters": {"data": options.data, "pairs": len(pairs), "batch_size": options.batch_size,
                           "lr": options.lr, "max_length": max_length, "seed": options.seed,
                           "base_model": "all-MiniLM-L6-v2"},
            "load_before": load_before, "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("scoring", "training"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "oasst_en_100_trees.jsonl"))
    parser.add_argument("--replies", type=int, default=2000, help="scoring: replies to score (repeated to reach it)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="training: pairs per pass (160); scoring: ranked pairs scored as an evaluation (300)")
    parser.add_argument("--batch-size", type=int, default=None, help="scoring 32, training 16")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=None,
                        help="scoring: train_reward_model's default; training: 256")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "reward_model.json"))
    options = parser.parse_args()
    options.batch_size = options.batch_size or (32 if options.part == "scoring" else 16)
    options.pairs = options.pairs or (300 if options.part == "scoring" else 160)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from training.trainer_plumbing import quiet_libraries

    quiet_libraries()
    result = (bench_scoring if options.part == "scoring" else bench_training)(options)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "load_before": result.pop("load_before"),
               "load_after": os.getloadavg()}
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(), "machine": machine,
              **result}
    out = Path(options.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**previous, options.part: result}, indent=2) + "\n")
    print(f"\nwritten to {options.out} ({options.part})")


if __name__ == "__main__":
    main()
