"""score_replies: sorted by length and batched, yet each score is the one its reply gets alone, in input order."""

import random

import pytest
import torch

from training.data import Turn
from training.reward import encode_reply, score_replies

from .tiny_models import sentence


@pytest.fixture(scope="module")
def untrained_tiny_bert(tiny_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    torch.nn.init.normal_(model.classifier.weight, std=100.0)  # spread the scores so that a mix-up would show
    return model, AutoTokenizer.from_pretrained(tiny_bert)


def _items(count: int, seed: int) -> list[tuple[tuple[Turn, ...], str]]:
    rng = random.Random(seed)
    items = []
    for _ in range(count):
        conversation = tuple(Turn(rng.choice(["prompter", "assistant"]), sentence(rng, False))
                             for _ in range(rng.randint(1, 4)))
        reply = " ".join(sentence(rng, rng.random() < 0.5) for _ in range(rng.randint(1, 6)))
        items.append((conversation, reply))
    return items


def test_batched_scores_equal_one_by_one_scores_in_the_input_order(untrained_tiny_bert):
    model, tokenizer = untrained_tiny_bert
    items = _items(40, seed=1)
    batched = score_replies(model, tokenizer, items, max_length=48, batch_size=8)
    alone = [score_replies(model, tokenizer, [item], max_length=48, batch_size=1)[0] for item in items]
    assert batched == pytest.approx(alone, rel=0, abs=1e-4)
    assert len({round(score, 3) for score in alone}) > 30  # distinct scores: a permutation would be caught


def test_each_batch_pads_only_to_its_own_longest_reply(untrained_tiny_bert):
    model, tokenizer = untrained_tiny_bert
    items = _items(40, seed=2)
    lengths = sorted(len(encode_reply(tokenizer, c, r, max_length=48)) for c, r in items)
    widths = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        score_replies(model, tokenizer, items, max_length=48, batch_size=8)
    finally:
        hook.remove()
    assert widths == [lengths[start + 7] for start in range(0, 40, 8)]
    assert score_replies(model, tokenizer, [], max_length=48) == []


def test_identical_items_are_scored_once_and_each_gets_the_score(untrained_tiny_bert):
    model, tokenizer = untrained_tiny_bert
    items = _items(6, seed=3)
    repeated = [items[index % 6] for index in (0, 1, 2, 0, 3, 4, 5, 1, 0)]
    rows = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        scores = score_replies(model, tokenizer, repeated, max_length=48, batch_size=4)
    finally:
        hook.remove()
    assert sum(rows) == 6
    alone = score_replies(model, tokenizer, items, max_length=48)
    assert scores == [alone[index % 6] for index in (0, 1, 2, 0, 3, 4, 5, 1, 0)]

