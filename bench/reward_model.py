"""Side by side: our reward-model training step against TRL's RewardTrainer used directly.

Both train the same backbone on the same tokenised preference pairs (same batch size, learning
rate, length and seed) for one pass; the table gives pairs per second. Ours adds SPEC's
0.001 * mean(r^2) term and turns TRL's default activation checkpointing off.

    python bench/reward_model.py --data ../shared/data/oasst_en_100_trees.jsonl [--pairs 160]

Writes bench/results/reward_model.json.
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
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "oasst_en_100_trees.jsonl"))
    parser.add_argument("--pairs", type=int, default=160, help="training pairs per pass (the first N)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "reward_model.json"))
    options = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oasst.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    from trl import RewardTrainer

    from training.data import load_groups, preference_pairs
    from training.reward import _regularised_trainer_class, default_base_model, pairs_dataset, quiet_libraries

    quiet_libraries()
    base_model = default_base_model()
    pairs = preference_pairs(load_groups(options.data))[: options.pairs]
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    dataset = pairs_dataset(pairs, tokenizer, max_length=options.max_length)
    common = {"base_model": base_model, "dataset": dataset, "tokenizer": tokenizer, "batch_size": options.batch_size,
              "lr": options.lr, "max_length": options.max_length, "seed": options.seed}

    runs = {
        "trl RewardTrainer, defaults": timed_pass(RewardTrainer, {}, **common),
        "ours (regularised, no checkpointing)": timed_pass(
            _regularised_trainer_class(),
            {"center_rewards_coefficient": None, "gradient_checkpointing": None, "activation_checkpointing": False},
            **common),
    }
    rows = {name: {"seconds": round(seconds, 2), "pairs_per_second": round(len(pairs) / seconds, 2)}
            for name, seconds in runs.items()}
    print(f"\nreward-model training pass: {len(pairs)} pairs, batch {options.batch_size}, "
          f"max length {options.max_length}, MiniLM, CPU ({os.cpu_count()} cores)\n")
    print(f"{'trainer':40} {'seconds':>9} {'pairs/s':>9}")
    for name, row in rows.items():
        print(f"{name:40} {row['seconds']:>9.2f} {row['pairs_per_second']:>9.2f}")
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
              "parameters": {**vars(options), "pairs": len(pairs), "base_model": "all-MiniLM-L6-v2"}, "runs": rows}
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    main()
