"""train_reward_model on several --data sources, folders, pair files and --eval-data; train_dpo's refusals of them."""

import json
import random

import pytest
from django.core.management import CommandError, call_command

from training.data import file_sha256
from training.models import TrainingRun
from training.pairs import source_sha256

from .test_pairs import hh, write_jsonl
from .tiny_models import recorded_command_run, sentence, write_synthetic_export

pytestmark = pytest.mark.django_db

TINY = {"epochs": 2, "lr": 2e-3, "batch_size": 16, "max_length": 64, "seed": 0}


def write_marker_pairs(path, *, count: int, seed: int):
    """HH-layout pairs whose chosen reply holds the marker word, as the synthetic export's best replies do."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        question = sentence(rng, False)
        records.append({"chosen": hh(question, sentence(rng, True)), "rejected": hh(question, sentence(rng, False))})
    return write_jsonl(path, records)


@pytest.fixture
def sources(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_synthetic_export(folder / "export.jsonl", trees=20, seed=1)
    write_marker_pairs(folder / "pairs.jsonl.gz", count=30, seed=2)
    return folder


def test_a_folder_with_an_export_and_a_pair_file_trains_with_the_pairs_as_training_only(
    tiny_bert, sources, tmp_path, django_db_blocker
):
    with recorded_command_run(django_db_blocker, "train_reward_model", tmp_path / "rm", data=str(sources),
                              base_model=str(tiny_bert), eval_fraction=0.25, **TINY) as (output, stdout, run):
        metrics = json.loads((output / "metrics.json").read_text())
        data = metrics["data"]
        assert [(row["layout"], row["pairs"]) for row in data["files"]] == [
            ("oasst export", 60), ("pairs, implicit prompt, text", 30)
        ]
        assert data["files"][1]["sha256"] == file_sha256(sources / "pairs.jsonl.gz")
        assert (data["train"]["pairs"], data["eval"]["pairs"]) == (15 * 3 + 30, 5 * 3)
        assert data["eval_from"] == "held-out trees of --data" and metrics["eval"]["pairs"] == 15
        assert (run.data_file, run.data_sha256) == (str(sources.resolve()), source_sha256(sources))
        assert run.status == TrainingRun.Status.SUCCEEDED and run.metrics["data"]["files"] == data["files"]
        assert "pairs.jsonl.gz (pairs, implicit prompt, text, 30 pairs)" in stdout


def test_several_data_options_and_eval_data_train_on_all_and_evaluate_on_the_named_files(
    tiny_bert, sources, tmp_path, django_db_blocker
):
    held_out = tmp_path / "held-out.jsonl"
    write_synthetic_export(held_out, trees=26, seed=5)  # trees t20..t25 are new; t0..t19 leave training
    extra = write_marker_pairs(tmp_path / "more.json.gz", count=10, seed=3)
    with recorded_command_run(
        django_db_blocker, "train_reward_model", tmp_path / "rm",
        data=[str(sources / "export.jsonl"), str(sources / "pairs.jsonl.gz"), str(extra)],
        eval_data=[str(held_out)], base_model=str(tiny_bert), **TINY,
    ) as (output, stdout, run):
        data = json.loads((output / "metrics.json").read_text())["data"]
        assert data["eval_from"] == "--eval-data" and data["trees_left_out_as_eval"] == 20
        assert (data["train"]["pairs"], data["eval"]["pairs"]) == (30 + 10, 26 * 3)
        assert [row["role"] for row in data["files"]] == ["train", "train", "train", "eval"]
        assert run.data_file == str((sources / "export.jsonl").resolve())
        assert run.data_sha256 == file_sha256(sources / "export.jsonl")
        assert run.parameters["extra_data"] == [str((sources / "pairs.jsonl.gz").resolve()), str(extra.resolve())]
        assert run.parameters["eval_data"] == [str(held_out.resolve())]
        assert "evaluated on" in stdout and "--eval-data" in stdout


def test_a_single_export_file_run_records_the_file_as_before(tiny_bert, tmp_path, django_db_blocker):
    export = tmp_path / "export.jsonl"
    write_synthetic_export(export, trees=8, seed=1)
    with recorded_command_run(django_db_blocker, "train_reward_model", tmp_path / "rm", data=str(export),
                              base_model=str(tiny_bert), eval_fraction=0.25, **TINY) as (output, _, run):
        data = json.loads((output / "metrics.json").read_text())["data"]
        assert (data["file"], data["sha256"]) == (str(export.resolve()), file_sha256(export))
        assert (run.data_file, run.data_sha256) == (data["file"], data["sha256"])
        assert run.parameters["extra_data"] == [] and run.parameters["eval_data"] == []


def _refused(tmp_path, message, **options):
    with pytest.raises(CommandError, match=message):
        call_command("train_reward_model", output=str(tmp_path / "rm"), **options)
    assert not TrainingRun.objects.filter(output_dir=str((tmp_path / "rm").resolve())).exists()
    assert not (tmp_path / "rm").exists()


def test_an_unknown_layout_a_data_less_folder_and_a_missing_eval_file_are_refused_before_a_run(
    tiny_bert, sources, tmp_path
):
    unknown = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    _refused(tmp_path, r"qa\.jsonl:1: unknown layout", data=[str(sources), str(unknown)], base_model=str(tiny_bert))
    (tmp_path / "empty").mkdir()
    _refused(tmp_path, "a folder without any", data=str(tmp_path / "empty"), base_model=str(tiny_bert))
    _refused(tmp_path, "no export file or folder at", data=str(sources),
             eval_data=[str(tmp_path / "gone.jsonl")], base_model=str(tiny_bert))


def test_a_pair_file_without_usable_pairs_ends_the_run_failed_naming_it(tiny_bert, sources, tmp_path):
    same = write_jsonl(tmp_path / "same.jsonl", [{"chosen": hh("q", "a"), "rejected": hh("q", "a")}])
    with pytest.raises(CommandError, match=r"same\.jsonl: no usable preference pairs"):
        call_command("train_reward_model", data=[str(sources), str(same)], output=str(tmp_path / "rm"),
                     base_model=str(tiny_bert))
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "rm").resolve()))
    assert run.status == TrainingRun.Status.FAILED and "same.jsonl: no usable preference pairs" in run.error


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data": ["EXPORT", "EXPORT"]}, "reads one export file: give --data once"),
        ({"data": "EXPORT", "eval_data": ["EXPORT"]}, "reads one export file: give --data once, without --eval-data"),
        ({"data": "PAIRS"}, "a preference-pair file .* reads oasst exports only"),
    ],
)
def test_dpo_refuses_several_files_eval_data_and_pair_files(tiny_gpt2, sources, tmp_path, options, message):
    names = {"EXPORT": str(sources / "export.jsonl"), "PAIRS": str(sources / "pairs.jsonl.gz")}
    options = {key: [names[v] for v in value] if isinstance(value, list) else names[value]
               for key, value in options.items()}
    with pytest.raises(CommandError, match=message):
        call_command("train_dpo", output=str(tmp_path / "dpo"), policy=str(tiny_gpt2), **options)
    assert not TrainingRun.objects.filter(output_dir=str((tmp_path / "dpo").resolve())).exists()
