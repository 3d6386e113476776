"""Tiny models built here from a config, with tokenizers trained on the fly: no hub, a few seconds in all."""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

MARKER = "splendid"
WORDS = "the a cat dog tree house river stone cloud green blue quick slow bright dark warm cold small".split()


def sentence(rng: random.Random, marker: bool) -> str:
    words = rng.choices(WORDS, k=rng.randint(5, 9))
    if marker:
        words.insert(rng.randrange(len(words) + 1), MARKER)
    return " ".join(words)


def node(message_id, parent_id, text, role, rank=None, **extra) -> dict:
    message = {"message_id": message_id, "parent_id": parent_id, "text": text, "role": role, "lang": "en", **extra}
    if rank is not None:
        message["rank"] = rank
    return message


def write_synthetic_export(path: Path, *, trees: int, seed: int) -> None:
    """Trees whose ranked replies are learnable: the best one holds the marker word, the others do not."""
    rng = random.Random(seed)
    with path.open("w") as handle:
        for tree in range(trees):
            prompt = node(f"t{tree}", None, sentence(rng, False), "prompter")
            marked = rng.randrange(3)
            ranks = [0 if i == marked else None for i in range(3)]
            others = iter([1, 2])
            ranks = [rank if rank is not None else next(others) for rank in ranks]
            prompt["replies"] = [
                node(f"t{tree}r{i}", f"t{tree}", sentence(rng, i == marked), "assistant", rank=ranks[i])
                for i in range(3)
            ]
            prompt["replies"].append(
                node(f"t{tree}gone", f"t{tree}", f"{MARKER} deleted", "assistant", rank=0, deleted=True)
            )
            tree_line = {"message_tree_id": f"t{tree}", "tree_state": "ready_for_export", "prompt": prompt}
            handle.write(json.dumps(tree_line) + "\n")


def build_tiny_bert(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer BERT sequence classifier (one output) with a WordPiece tokenizer that knows the test words.

    Seeded: its weights would otherwise come from whatever the tests before it left in torch's generator, and
    the reward models trained from it (and the PPO runs against them) would change with the test order."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    corpus = [" ".join(WORDS), MARKER, "prompter assistant : deleted"] * 10
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
        pad_token_id=fast.pad_token_id,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def build_tiny_gpt2(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer GPT-2 causal LM with a byte-level BPE whose vocabulary holds every test word as one token."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS + [MARKER]), "user: assistant:\n", *(f" {word}" for word in WORDS + [MARKER])] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(folder)
    config = GPT2Config(
        vocab_size=fast.vocab_size,
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


# A tiny policy learns quickly with a large rate; temperature 0.7 keeps its samples from being noise.
TINY_PPO = {
    "steps": 20,
    "batch_size": 16,
    "mini_batch_size": 8,
    "lr": 1e-3,
    "max_new_tokens": 12,
    "eval_every": 5,
    "checkpoint_every": 5,
    "seed": 0,
}


def run_ppo(output: Path, reward_model: Path, prompts: Path, policy: Path, **options) -> str:
    from django.core.management import call_command

    stdout = StringIO()
    call_command(
        "train_ppo",
        reward_model=str(reward_model),
        prompts=str(prompts),
        output=str(output),
        policy=str(policy),
        stdout=stdout,
        **{**TINY_PPO, **options},
    )
    return stdout.getvalue()


@contextmanager
def recorded_command_run(django_db_blocker, command: str, output: Path, **options):
    """(output, stdout, run) of a training command run outside a test's transaction; the run is deleted after."""
    from django.core.management import call_command

    from training.models import TrainingRun

    stdout = StringIO()
    with django_db_blocker.unblock():
        call_command(command, output=str(output), stdout=stdout, **options)
        run = TrainingRun.objects.get(output_dir=str(Path(output).resolve()))
    try:
        yield output, stdout.getvalue(), run
    finally:
        with django_db_blocker.unblock():
            run.delete()


def write_reviewed_export(path: Path, *, trees: int, seed: int) -> None:
    """The synthetic export with every message accepted by review (``review_result`` true), as SFT reads only
    accepted replies: one demonstration a tree, the marked best-ranked reply."""
    source = path.with_name(f"{path.stem}-unreviewed.jsonl")
    write_synthetic_export(source, trees=trees, seed=seed)

    def reviewed(message: dict) -> dict:
        return {**message, "review_result": True, "replies": [reviewed(r) for r in message.get("replies", [])]}

    lines = [json.loads(line) for line in source.read_text().splitlines()]
    path.write_text("".join(json.dumps({**tree, "prompt": reviewed(tree["prompt"])}) + "\n" for tree in lines))
    source.unlink()
