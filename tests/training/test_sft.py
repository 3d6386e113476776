"""SFT: the demonstrations chosen from export trees, the assistant-only loss mask, `manage.py train_sft` end to end on
the tiny GPT-2, its TrainingRun, its launch from the admin and its refusals."""

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from training.data import Turn, read_messages
from training.models import TrainingRun
from training.policy import chat_prompt, load_policy
from training.sft import SFTExample, sft_examples, sft_features

from .tiny_models import MARKER, node, recorded_command_run, write_reviewed_export

# The module fixtures record runs: every test declares the database so that it is set up even when run alone.
pytestmark = pytest.mark.django_db


def accepted(message_id, parent_id, text, role, rank=None, **extra) -> dict:
    extra = {"message_tree_id": "t", "review_result": True, "deleted": False, "synthetic": False, **extra}
    return node(message_id, parent_id, text, role, rank, **extra)


def hand_made_tree() -> list[dict]:
    """p -> a0 (best) / a1 / a2 unreviewed / a3 rejected; a0 -> p2 -> b0 synthetic / b1 / b2; a0 -> p3 deleted."""
    return [
        accepted("p", None, "question", "prompter"),
        accepted("a1", "p", "second best answer", "assistant", rank=1),
        accepted("a0", "p", "best answer", "assistant", rank=0),
        accepted("a2", "p", "unreviewed answer", "assistant", rank=2, review_result=None),
        accepted("a3", "p", "rejected answer", "assistant", rank=3, review_result=False),
        accepted("p2", "a0", "follow-up", "prompter"),
        accepted("b0", "p2", "synthetic answer", "assistant", rank=0, synthetic=True),
        accepted("b1", "p2", "kept answer", "assistant", rank=1),
        accepted("b2", "p2", "worse answer", "assistant", rank=2),
        accepted("p3", "a0", "deleted follow-up", "prompter", deleted=True),
        accepted("c0", "p3", "answer under a deleted prompt", "assistant"),
    ]


def texts(examples: list[SFTExample]) -> list[tuple[str, ...]]:
    return [tuple(turn.text for turn in example.conversation) for example in examples]


# --- the data builder --------------------------------------------------------------------------------------------


def test_each_example_is_a_path_through_the_best_ranked_accepted_replies():
    examples = sft_examples(hand_made_tree())
    assert texts(examples) == [
        ("question", "best answer"),
        ("question", "best answer", "follow-up", "kept answer"),
    ]
    assert [example.message_id for example in examples] == ["a0", "b1"]
    assert {(example.tree_id, example.lang) for example in examples} == {("t", "en")}
    assert all(example.conversation[-1].role == "assistant" for example in examples)


def test_all_paths_takes_every_accepted_reply_but_never_a_skipped_one():
    examples = sft_examples(hand_made_tree(), all_paths=True)
    assert sorted(texts(examples)) == sorted([
        ("question", "best answer"),
        ("question", "second best answer"),
        ("question", "best answer", "follow-up", "kept answer"),
        ("question", "best answer", "follow-up", "worse answer"),
    ])


def test_an_unranked_only_reply_is_taken_and_a_ranked_reply_goes_before_an_unranked_one():
    messages = [
        accepted("p", None, "question", "prompter"),
        accepted("late", "p", "unranked answer", "assistant"),
        accepted("ranked", "p", "ranked answer", "assistant", rank=1),
        accepted("q", None, "other question", "prompter", message_tree_id="u"),
        accepted("only", "q", "only answer", "assistant", message_tree_id="u"),
    ]
    assert [example.message_id for example in sft_examples(messages)] == ["ranked", "only"]


def test_trees_without_an_accepted_assistant_reply_give_nothing():
    messages = [
        accepted("s", None, "synthetic question", "prompter", synthetic=True),
        accepted("sa", "s", "answer to it", "assistant", rank=0),
        accepted("lonely", None, "nobody answered", "prompter"),
        accepted("gone", None, "deleted question", "prompter", deleted=True),
        accepted("ga", "gone", "answer to it", "assistant"),
        accepted("blank", None, "question", "prompter"),
        accepted("ba", "blank", "   ", "assistant"),
    ]
    assert sft_examples(messages) == []


def test_the_shared_trees_give_alternating_conversations_ending_in_the_best_accepted_reply(shared_trees):
    messages = read_messages(shared_trees)
    by_id = {message["message_id"]: message for message in messages}
    best, every = sft_examples(messages), sft_examples(messages, all_paths=True)
    assert 100 < len(best) < len(every)
    assert len({example.tree_id for example in best}) > 80
    for example in best:
        roles = [turn.role for turn in example.conversation]
        assert roles == ["prompter", "assistant"] * (len(roles) // 2)
        reply = by_id[example.message_id]
        assert reply["review_result"] is True and not reply["deleted"] and not reply["synthetic"]
        siblings = [
            m for m in messages
            if m.get("parent_id") == reply["parent_id"] and m["review_result"] is True and not m["deleted"]
            and not m["synthetic"] and m.get("rank") is not None
        ]
        assert reply.get("rank") == min((m["rank"] for m in siblings), default=None)
    # one demonstration per answered prompter message
    assert max(Counter((e.tree_id, e.conversation[:-1]) for e in best).values()) == 1


# --- the loss mask -----------------------------------------------------------------------------------------------


def test_only_the_last_assistant_turn_and_its_eos_carry_labels(tiny_gpt2):
    _, tokenizer = load_policy(tiny_gpt2)
    conversation = (Turn("prompter", "the cat"), Turn("assistant", "a dog"), Turn("prompter", "the tree"),
                    Turn("assistant", "a green house"))
    example = SFTExample(tree_id="t", message_id="m", lang="en", conversation=conversation)
    features = sft_features(tokenizer, example, max_length=256)
    prompt_ids = tokenizer(chat_prompt(tokenizer, conversation[:-1]), add_special_tokens=False)["input_ids"]
    input_ids, labels = features["input_ids"], features["labels"]
    assert input_ids[: len(prompt_ids)] == prompt_ids  # the prompt exactly as sampling and PPO put it
    assert labels[: len(prompt_ids)] == [-100] * len(prompt_ids)  # the earlier assistant turn "a dog" included
    assert labels[len(prompt_ids) :] == input_ids[len(prompt_ids) :]
    assert labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(labels[len(prompt_ids) : -1]) == " a green house"


def test_a_chat_template_puts_the_mask_after_its_assistant_header(tiny_gpt2):
    _, tokenizer = load_policy(tiny_gpt2)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    example = SFTExample("t", "m", "en", (Turn("prompter", "the cat"), Turn("assistant", "a dog")))
    features = sft_features(tokenizer, example, max_length=256)
    masked = [token for token, label in zip(features["input_ids"], features["labels"], strict=True) if label == -100]
    assert tokenizer.decode(masked).endswith("<|im_start|>assistant\n")
    learned = [label for label in features["labels"] if label != -100]
    assert tokenizer.decode(learned[:-1]) == "a dog" and learned[-1] == tokenizer.eos_token_id


def test_long_examples_keep_their_start_and_a_prompt_that_fills_max_length_is_dropped(tiny_gpt2):
    _, tokenizer = load_policy(tiny_gpt2)
    example = SFTExample("t", "m", "en", (Turn("prompter", "the cat"), Turn("assistant", "a dog " * 20)))
    prompt = chat_prompt(tokenizer, example.conversation[:-1])
    prompt_length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    cut = sft_features(tokenizer, example, max_length=prompt_length + 3)
    assert len(cut["input_ids"]) == len(cut["labels"]) == prompt_length + 3
    assert sum(label != -100 for label in cut["labels"]) == 3
    assert sft_features(tokenizer, example, max_length=prompt_length) is None


# --- the command -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reviewed_export(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sft-data") / "export.jsonl"
    write_reviewed_export(path, trees=60, seed=1)
    return path


TINY_SFT = {"epochs": 3, "lr": 5e-3, "batch_size": 16, "max_length": 64, "eval_fraction": 0.25, "seed": 0,
            "samples": 3, "sample_tokens": 8}


@pytest.fixture(scope="module")
def trained(tiny_gpt2, reviewed_export, tmp_path_factory, django_db_setup, django_db_blocker):
    with recorded_command_run(
        django_db_blocker, "train_sft", tmp_path_factory.mktemp("run") / "sft", data=str(reviewed_export),
        policy=str(tiny_gpt2), **TINY_SFT,
    ) as result:
        yield result


def test_the_command_writes_policy_tokenizer_metrics_curve_samples_and_card(trained):
    output, stdout, _ = trained
    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "training_curve.png",
                 "samples.json", "samples.md", "README.md"):
        assert (output / name).is_file(), name
    assert not (output / "checkpoints").exists()
    metrics = json.loads((output / "metrics.json").read_text())
    card = (output / "README.md").read_text()
    assert metrics["data"]["sha256"] in card and "export.jsonl" in card and "| lr | `0.005` |" in card
    assert "held-out assistant-token loss" in stdout and "SFT policy written" in stdout
    model, _ = load_policy(output)  # a plain policy folder that train_ppo and train_dpo can start from
    assert model.config.model_type == "gpt2"


def test_held_out_assistant_token_loss_falls(trained):
    output, _, _ = trained
    metrics = json.loads((output / "metrics.json").read_text())
    data, before, after = metrics["data"], metrics["held_out_loss"]["before"], metrics["held_out_loss"]["after"]
    assert (data["train"]["trees"], data["eval"]["trees"]) == (45, 15)
    assert (data["train"]["examples"], data["eval"]["examples"]) == (45, 15)  # the marked best reply of each tree
    assert after["loss"] < before["loss"] - 1
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    assert before["tokens"] == after["tokens"] == data["eval"]["assistant_tokens"] > 15
    assert any("loss" in row for row in metrics["steps"])


def test_samples_show_held_out_prompts_answered_before_and_after(trained):
    output, _, _ = trained
    samples = json.loads((output / "samples.json").read_text())
    assert len(samples) == 3
    for sample in samples:
        assert set(sample) >= {"tree_id", "prompt", "reference", "before", "after"}
        assert MARKER in sample["reference"]
    assert samples[0]["prompt"] in (output / "samples.md").read_text()


def test_the_command_records_a_succeeded_sft_run_with_provenance(trained):
    output, stdout, run = trained
    assert run.kind == TrainingRun.Kind.SFT
    assert (run.status, run.progress) == (TrainingRun.Status.SUCCEEDED, 100)
    assert run.data_sha256 == json.loads((output / "metrics.json").read_text())["data"]["sha256"]
    assert run.parameters["lr"] == 0.005 and run.parameters["all_paths"] is False
    assert run.metrics["held_out_loss"]["after"]["loss"] < run.metrics["held_out_loss"]["before"]["loss"]
    assert "steps" not in run.metrics
    assert "step" in run.log_tail
    assert f"training run {run.pk} recorded" in stdout


def test_lora_trains_an_adapter_and_writes_a_merged_policy(tiny_gpt2, reviewed_export, tmp_path):
    output = tmp_path / "lora"
    call_command("train_sft", data=str(reviewed_export), output=str(output), policy=str(tiny_gpt2),
                 lora_rank=4, **{**TINY_SFT, "lr": 2e-2, "samples": 1})
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["trainable_parameters"] < metrics["parameters"] / 5
    assert metrics["held_out_loss"]["after"]["loss"] < metrics["held_out_loss"]["before"]["loss"]
    assert not (output / "adapter_config.json").exists()
    model, _ = load_policy(output)
    assert not any("lora" in name for name, _ in model.named_parameters())


# --- refusals: a CommandError, no run and no folder --------------------------------------------------------------


def assert_nothing_written(output: Path) -> None:
    assert not output.exists()
    assert not TrainingRun.objects.filter(output_dir=str(output.resolve())).exists()


def test_a_file_without_conversations_is_refused(tiny_gpt2, tmp_path):
    data = tmp_path / "export.jsonl"
    prompt = node("t", None, "hello", "prompter", review_result=True)
    prompt["replies"] = [node("r", "t", "unreviewed reply", "assistant", rank=0, review_result=None)]
    data.write_text(json.dumps({"message_tree_id": "t", "prompt": prompt}) + "\n")
    with pytest.raises(CommandError, match="no conversations"):
        call_command("train_sft", data=str(data), output=str(tmp_path / "out"), policy=str(tiny_gpt2))
    assert_nothing_written(tmp_path / "out")


def test_a_policy_folder_without_a_tokenizer_is_refused(tiny_gpt2, reviewed_export, tmp_path):
    policy = tmp_path / "policy"
    policy.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_gpt2 / name, policy / name)
    with pytest.raises(CommandError, match="no tokenizer"):
        call_command("train_sft", data=str(reviewed_export), output=str(tmp_path / "out"), policy=str(policy))
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    ("option", "value"),
    [("epochs", 0), ("lr", 0), ("eval_fraction", 0), ("eval_fraction", 1), ("batch_size", 0), ("max_length", 0),
     ("lora_rank", -1), ("samples", -1), ("sample_tokens", 0)],
)
def test_bad_numbers_are_refused(tiny_gpt2, reviewed_export, tmp_path, option, value):
    with pytest.raises(CommandError, match=rf"{option.replace('_', '[-_]')}.* must"):
        call_command("train_sft", data=str(reviewed_export), output=str(tmp_path / "out"), policy=str(tiny_gpt2),
                     **{option: value})
    assert_nothing_written(tmp_path / "out")


def test_a_missing_file_a_pair_file_and_eval_data_are_refused(tiny_gpt2, reviewed_export, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pair = {"chosen": "\n\nHuman: hi\n\nAssistant: yes", "rejected": "\n\nHuman: hi\n\nAssistant: no"}
    pairs.write_text(json.dumps(pair))
    refusals = [
        ({"data": str(tmp_path / "none.jsonl")}, "no export file"),
        ({"data": str(pairs)}, "oasst exports only"),
        ({"data": str(reviewed_export), "eval_data": [str(reviewed_export)]}, "--eval-data"),
    ]
    for options, message in refusals:
        with pytest.raises(CommandError, match=message):
            call_command("train_sft", output=str(tmp_path / "out"), policy=str(tiny_gpt2), **options)
    assert_nothing_written(tmp_path / "out")


def test_without_a_prepared_policy_the_command_names_prepare_base_models(reviewed_export, tmp_path, settings):
    settings.MODELS_DIR = str(tmp_path / "models")
    with pytest.raises(CommandError, match="prepare_base_models"):
        call_command("train_sft", data=str(reviewed_export), output=str(tmp_path / "out"))
    assert_nothing_written(tmp_path / "out")


def test_a_crash_inside_training_ends_the_run_failed_with_the_error(tiny_gpt2, reviewed_export, tmp_path, monkeypatch):
    def crash(config, progress=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("training.management.commands.train_sft.train_sft", crash)
    with pytest.raises(RuntimeError):
        call_command("train_sft", data=str(reviewed_export), output=str(tmp_path / "out"), policy=str(tiny_gpt2))
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "out").resolve()))
    assert (run.kind, run.status, run.error) == (TrainingRun.Kind.SFT, TrainingRun.Status.FAILED,
                                                 "RuntimeError: out of memory")


# --- the admin ---------------------------------------------------------------------------------------------------


def test_the_admin_launches_an_sft_run_that_the_job_trains(
    client, settings, tmp_path, reviewed_export, tiny_gpt2, django_capture_on_commit_callbacks
):
    from tests.factories import AdminFactory

    settings.EXPORT_DIR = str(tmp_path)
    (tmp_path / "oasst-trees.jsonl").write_bytes(reviewed_export.read_bytes())
    admin = AdminFactory()
    client.force_login(admin)
    assert client.get("/admin/training/trainingrun/add/?kind=sft").status_code == 200
    form = {"data_file": "oasst-trees.jsonl", "policy": str(tiny_gpt2), "epochs": "1", "lr": "0.005",
            "batch_size": "16", "lora_rank": "0"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/training/trainingrun/add/?kind=sft", form)
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.SFT, launched_by=admin)
    assert response.status_code == 302
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error  # Celery runs eagerly without a broker
    assert run.parameters["policy"] == str(tiny_gpt2) and run.parameters["all_paths"] is False
    assert run.metrics["held_out_loss"]["before"]["tokens"] > 0 and "steps" not in run.metrics
    assert (Path(run.output_dir) / "training_curve.png").is_file()
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert "held-out loss" in page


def test_the_sft_launch_form_refuses_a_non_positive_rate(admin_client, settings, tmp_path, tiny_gpt2):
    settings.EXPORT_DIR = str(tmp_path)
    (tmp_path / "oasst-trees.jsonl").write_text("")
    form = {"data_file": "oasst-trees.jsonl", "policy": str(tiny_gpt2), "epochs": "1", "lr": "0", "batch_size": "16",
            "lora_rank": "0"}
    response = admin_client.post("/admin/training/trainingrun/add/?kind=sft", form)
    assert response.status_code == 200 and response.context["form"].errors
    assert not TrainingRun.objects.filter(kind=TrainingRun.Kind.SFT, launched_by__isnull=False).exists()
