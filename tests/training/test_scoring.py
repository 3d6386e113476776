"""score_replies: sorted by length and batched, yet each score is the one its reply gets alone, in input order."""

import random

import pytest
import torch

from training.data import Turn
from training.reward import RewardInput, encode_reply, score_replies

from .tiny_models import sentence

READING = RewardInput(max_length=48)


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
    batched = score_replies(model, tokenizer, items, reading=READING, batch_size=8)
    alone = [score_replies(model, tokenizer, [item], reading=READING, batch_size=1)[0] for item in items]
    assert batched == pytest.approx(alone, rel=0, abs=1e-4)
    assert len({round(score, 3) for score in alone}) > 30  # distinct scores: a permutation would be caught


def test_each_batch_pads_only_to_its_own_longest_reply(untrained_tiny_bert):
    model, tokenizer = untrained_tiny_bert
    items = _items(40, seed=2)
    lengths = sorted(len(encode_reply(tokenizer, c, r, reading=READING)) for c, r in items)
    widths = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        score_replies(model, tokenizer, items, reading=READING, batch_size=8)
    finally:
        hook.remove()
    assert widths == [lengths[start + 7] for start in range(0, 40, 8)]
    assert score_replies(model, tokenizer, [], reading=READING) == []


def test_identical_items_are_scored_once_and_each_gets_the_score(untrained_tiny_bert):
    model, tokenizer = untrained_tiny_bert
    items = _items(6, seed=3)
    repeated = [items[index % 6] for index in (0, 1, 2, 0, 3, 4, 5, 1, 0)]
    rows = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        scores = score_replies(model, tokenizer, repeated, reading=READING, batch_size=4)
    finally:
        hook.remove()
    assert sum(rows) == 6
    alone = score_replies(model, tokenizer, items, reading=READING)
    assert scores == [alone[index % 6] for index in (0, 1, 2, 0, 3, 4, 5, 1, 0)]



# the input layout ---------------------------------------------------------------------------------------------------


def _words(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


def test_a_long_reply_is_kept_whole_and_the_conversation_loses_its_oldest_turns(untrained_tiny_bert):
    _, tokenizer = untrained_tiny_bert
    conversation = (Turn("prompter", "river " * 30), Turn("assistant", "house " * 30), Turn("prompter", "stone " * 30))
    reply = "dog " * 20
    reading = RewardInput(max_length=48, min_context=8)
    tokens = _words(tokenizer, encode_reply(tokenizer, conversation, reply, reading=reading))
    assert len(tokens) == 48
    assert tokens.count("dog") == 20  # the whole reply
    # newest turn first, so the cut falls on the oldest turns: no "river", no "house", the latest "stone"s stay
    assert "river" not in tokens and "house" not in tokens and tokens.count("stone") == 48 - 3 - 20 - 2


def test_a_reply_longer_than_the_room_keeps_its_start_and_leaves_min_context_to_the_conversation(untrained_tiny_bert):
    _, tokenizer = untrained_tiny_bert
    conversation = (Turn("prompter", "stone " * 30),)
    reply = "dog " * 10 + "river " * 100
    tokens = _words(tokenizer, encode_reply(tokenizer, conversation, reply, reading=RewardInput(max_length=48,
                                                                                                min_context=8)))
    assert len(tokens) == 48
    assert tokens.count("stone") == 8 - 2  # min_context counts the role and colon tokens ("prompter", ":")
    assert tokens.count("dog") == 10 and tokens.count("river") == 48 - 3 - 8 - 10


def test_a_max_length_shorter_than_min_context_still_leaves_half_the_room_to_the_reply(untrained_tiny_bert):
    _, tokenizer = untrained_tiny_bert
    conversation = (Turn("prompter", "stone " * 60),)
    tokens = _words(tokenizer, encode_reply(tokenizer, conversation, "dog " * 60, reading=RewardInput(max_length=48)))
    assert len(tokens) == 48 and tokens.count("dog") == 48 - 3 - (48 - 3) // 2


def test_two_long_replies_of_different_lengths_stay_different_lengths(untrained_tiny_bert):
    """The flaw of the old text-pair layout: cut `longest_first`, both came out at max_length."""
    _, tokenizer = untrained_tiny_bert
    conversation = (Turn("prompter", "stone " * 60),)
    short, long = "dog " * 25, "dog " * 30
    whole = RewardInput(max_length=48, min_context=8)
    old = RewardInput(max_length=48, layout="text-pair")

    def dogs(reading, reply):
        return _words(tokenizer, encode_reply(tokenizer, conversation, reply, reading=reading)).count("dog")

    assert (dogs(whole, short), dogs(whole, long)) == (25, 30)
    assert dogs(old, short) == dogs(old, long) < 25


def test_short_inputs_are_the_plain_text_pair_in_both_layouts(untrained_tiny_bert):
    _, tokenizer = untrained_tiny_bert
    conversation = (Turn("prompter", "the quick dog"), Turn("assistant", "a stone"), Turn("prompter", "the river"))
    plain = tokenizer("prompter: the river\nassistant: a stone\nprompter: the quick dog", "a warm house")["input_ids"]
    for layout in ("reply-whole", "text-pair"):
        reading = RewardInput(max_length=48, layout=layout)
        assert encode_reply(tokenizer, conversation, "a warm house", reading=reading) == plain


def test_the_layout_round_trips_through_the_model_folder_and_old_folders_read_as_text_pair():
    reading = RewardInput(max_length=512)
    assert RewardInput.from_json(reading.as_json()) == reading
    assert reading.as_json() == {"format": "reply-whole", "max_length": 512, "min_context": 64}
    written_before = {"format": "text-pair, conversation newest turn first", "max_length": 256}
    assert RewardInput.from_json(written_before) == RewardInput(max_length=256, layout="text-pair")
    with pytest.raises(ValueError, match="unknown reward-model input layout 'sideways'"):
        RewardInput.from_json({"format": "sideways", "max_length": 256})
