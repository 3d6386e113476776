"""`train_reward_model --cv K` and the honest held-out figures in its metrics, card and plot (tiny BERT)."""

import json
import re

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import held_out_trees, tree_folds
from training.models import TrainingRun

from .tiny_models import recorded_command_run, write_synthetic_export

pytestmark = pytest.mark.django_db

TREES = 12


@pytest.fixture(scope="module")
def cv_run(tiny_bert, tmp_path_factory, django_db_setup, django_db_blocker):
    folder = tmp_path_factory.mktemp("cv")
    data = folder / "export.jsonl"
    write_synthetic_export(data, trees=TREES, seed=3)
    with recorded_command_run(
        django_db_blocker, "train_reward_model", folder / "rm", data=str(data), base_model=str(tiny_bert),
        epochs=2, lr=2e-3, batch_size=8, max_length=64, eval_fraction=0.25, seed=0, cv=3,
    ) as result:
        yield result


def test_every_tree_is_scored_once_out_of_fold_and_the_pooled_figure_sits_beside_the_length_rule(cv_run):
    output, _, _ = cv_run
    cv = json.loads((output / "metrics.json").read_text())["cv"]
    assert cv["k"] == 3 and [fold["fold"] for fold in cv["folds"]] == [1, 2, 3]
    assert sum(fold["trees"] for fold in cv["folds"]) == TREES
    assert sum(fold["eval"]["pairs"] for fold in cv["folds"]) == cv["pooled"]["pairs"] == TREES * 3
    # each fold trains on the other folds' trees: 3 pairs a tree
    assert all(fold["train_pairs"] == (TREES - fold["trees"]) * 3 for fold in cv["folds"])
    pooled = cv["pooled"]
    assert pooled["trees"] == TREES
    assert pooled["interval"][0] <= pooled["accuracy"] <= pooled["interval"][1]
    assert 0 <= pooled["length_rule"]["accuracy"] <= 1 and pooled["random"]["accuracy"] == 0.5
    assert "difference" in pooled["model_minus_length_rule"]
    assert sum(row["pairs"] for row in pooled["by_rank_gap"].values()) == TREES * 3


def test_cross_validation_reports_each_fold_as_it_goes_and_in_the_card_and_the_run(cv_run):
    output, stdout, run = cv_run
    for fold in (1, 2, 3):
        assert f"cross-validation fold {fold}/3: accuracy" in stdout
        assert f"cross-validation fold {fold}/3: accuracy" in run.log_tail
    assert "3-fold cross-validated accuracy" in stdout
    card = (output / "README.md").read_text()
    assert "## Cross-validation" in card and "| fold | trees |" in card
    assert run.metrics["cv"]["pooled"]["pairs"] == TREES * 3
    # one progress count over the three folds and the final model, ending at its total
    steps = [tuple(map(int, pair)) for pair in re.findall(r"\] (\d+)/(\d+) steps", stdout)]
    assert steps[-1][0] == steps[-1][1] and len({total for _, total in steps}) == 1
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)
    assert run.progress == 100


def test_held_out_metrics_card_and_summary_put_intervals_the_length_rule_and_a_coin_beside_the_accuracy(cv_run):
    output, stdout, run = cv_run
    evaluation = json.loads((output / "metrics.json").read_text())["eval"]
    assert evaluation["pairs"] == 9 and evaluation["trees"] == 3
    for key in ("interval", "wilson", "tree_bootstrap", "length_rule", "random", "model_minus_length_rule"):
        assert key in evaluation, key
    assert evaluation["by_rank_gap"]["1"]["length_rule"]["accuracy"] is not None
    card = (output / "README.md").read_text()
    low, high = evaluation["interval"]
    assert f"{evaluation['accuracy']:.3f} [{low:.3f}, {high:.3f}] (9 pairs, 3 trees)" in card
    assert "length rule" in card and "random (a fair coin on 9 pairs)" in card
    assert "model minus length rule" in stdout and "random (a fair coin)" in stdout
    assert (output / "accuracy.png").stat().st_size > 10_000
    assert run.metrics["eval"]["length_rule"] == evaluation["length_rule"]


def test_admin_shows_the_interval_the_length_rule_and_the_cross_validated_figure(cv_run, admin_client):
    _, _, finished = cv_run
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED, data_file="export.jsonl",
        output_dir="/nowhere", metrics={"eval": finished.metrics["eval"], "cv": finished.metrics["cv"]},
    )
    page = admin_client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    evaluation = finished.metrics["eval"]
    assert f"{evaluation['accuracy']:.3f} [{evaluation['interval'][0]:.3f}" in page
    assert f"length rule {evaluation['length_rule']['accuracy']:.3f}" in page
    assert "3-fold cross-validated accuracy" in page


def test_one_fold_is_refused_before_a_run_is_recorded(synthetic_export, tiny_bert, tmp_path):
    with pytest.raises(CommandError, match="--cv needs at least 2 folds"):
        call_command("train_reward_model", data=str(synthetic_export), output=str(tmp_path / "rm"),
                     base_model=str(tiny_bert), cv=1)
    assert not TrainingRun.objects.filter(output_dir=str((tmp_path / "rm").resolve())).exists()
    assert not (tmp_path / "rm").exists()


def test_more_folds_than_trees_are_refused_and_nothing_is_written(tiny_bert, tmp_path):
    data = tmp_path / "export.jsonl"
    write_synthetic_export(data, trees=4, seed=2)
    with pytest.raises(CommandError, match="cannot make 5 folds of 4 trees"):
        call_command("train_reward_model", data=str(data), output=str(tmp_path / "rm"), base_model=str(tiny_bert),
                     cv=5, eval_fraction=0.25)
    run = TrainingRun.objects.get(output_dir=str((tmp_path / "rm").resolve()))
    assert run.status == TrainingRun.Status.FAILED and "at most the number of trees" in run.error
    assert not (tmp_path / "rm").exists()


@settings(max_examples=50, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=6), min_size=2, max_size=40), st.integers(2, 8), st.integers(0, 999))
def test_tree_folds_partition_the_trees_evenly_and_repeat_for_a_seed(trees, k, seed):
    if k > len(trees):
        with pytest.raises(ValueError, match="at most the number of trees"):
            tree_folds(trees, k=k, seed=seed)
        return
    folds = tree_folds(trees, k=k, seed=seed)
    assert len(folds) == k and set().union(*folds) == trees
    assert sum(len(fold) for fold in folds) == len(trees)  # no tree in two folds
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert folds == tree_folds(list(trees), k=k, seed=seed)


def test_tree_folds_shuffle_like_the_held_out_split():
    trees = [f"t{i}" for i in range(20)]
    # the same seeded shuffle: the first fold's first tree is the held-out split's first pick
    assert tree_folds(trees, k=20, seed=7)[0] == held_out_trees(trees, eval_fraction=0.05, seed=7)
    with pytest.raises(ValueError, match="at least 2 folds"):
        tree_folds(trees, k=1, seed=0)
