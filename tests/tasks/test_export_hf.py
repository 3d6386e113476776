"""The Hugging Face release format: the public release's features, the split by tree, the dataset card,
the round trip through import_trees, refusals, and the zip downloads of the admin and the API."""

import io
import json
import zipfile
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from tasks.models import Message, MessageTree
from tests.conftest import token_client
from tests.factories import UserFactory
from tests.tasks import test_export_access
from tests.tasks.test_export_import import TREES_FILE, import_, needs_data, read_lines

finished_tree = test_export_access.finished_tree  # one tree, a prompt and its reply, ready for export
researchers_group = test_export_access.researchers_group

FEATURES_FIXTURE = Path(__file__).parent / "fixtures" / "oasst1_features.yaml"
TRAIN, VALIDATION = "data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"

pytestmark = pytest.mark.django_db


def export_hf_folder(out: Path, *args: str) -> str:
    stdout = io.StringIO()
    call_command("export_trees", str(out), "--format", "hf", "--no-progress", *args, stdout=stdout,
                 stderr=io.StringIO())
    return stdout.getvalue()


def export_jsonl(out: Path) -> list[dict]:
    call_command("export_trees", str(out), "--no-anonymize", "--include-synthetic", "--labels", "--no-progress",
                 stdout=io.StringIO(), stderr=io.StringIO())
    return read_lines(out)


def staff_member(group=None):
    user = UserFactory(is_staff=True)
    if group is not None:
        user.groups.add(group)
    return user


def offered_actions(client) -> set[str]:
    response = client.get("/admin/tasks/messagetree/")
    return {name for name, _ in response.context["action_form"].fields["action"].choices if name}


def admin_action(client, tree_id, action: str):
    return client.post("/admin/tasks/messagetree/", {"action": action, "_selected_action": [str(tree_id)]})


def public_features():
    from datasets import Features  # training/test dependency, never imported by the web path

    return Features._from_yaml_list(yaml.safe_load(FEATURES_FIXTURE.read_text())["features"])


def loaded(folder: Path):
    from datasets import load_dataset

    return load_dataset("parquet", data_dir=str(folder))


def split_trees(folder: Path) -> dict[str, set[str]]:
    import pyarrow.parquet as pq

    return {split: set(pq.read_table(folder / name, columns=["message_tree_id"]).column(0).to_pylist())
            for split, name in (("train", TRAIN), ("validation", VALIDATION))}


@pytest.fixture
def imported_100_trees():
    if not TREES_FILE.exists():
        pytest.skip(f"shared test data missing: {TREES_FILE}")
    import_(TREES_FILE)


@needs_data
def test_a_researcher_loads_the_folder_with_the_public_release_features(tmp_path, imported_100_trees):
    out = tmp_path / "release"
    summary = export_hf_folder(out, "--include-synthetic", "--anonymize", "seed-1")

    dataset = loaded(out)
    assert set(dataset) == {"train", "validation"}
    assert dataset["train"].features == public_features()
    assert list(dataset["train"].features) == list(public_features())  # the columns in the release's order
    assert dataset["validation"].features == public_features()
    assert dataset["train"].num_rows + dataset["validation"].num_rows == 1167
    assert "Exported 100 trees, 1167 messages" in summary
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["dataset_info"]["features"] == yaml.safe_load(FEATURES_FIXTURE.read_text())["features"]
    assert {split["name"]: split["num_examples"] for split in front["dataset_info"]["splits"]} == {
        "train": dataset["train"].num_rows, "validation": dataset["validation"].num_rows}
    assert front["license"] == "apache-2.0" and front["language"] == ["en"]
    assert "- en: 1167" in card and "@misc{kopf2023openassistant" in card
    assert "`include_synthetic`: True" in card and "seeded HMAC" in card and "seed-1" not in card
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "hf" and manifest["messages"] == 1167 and manifest["anonymized"]
    assert [entry["file"] for entry in manifest["files"]] == [TRAIN, VALIDATION]


@needs_data
def test_the_split_is_by_tree_and_follows_the_seed(tmp_path, imported_100_trees):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        export_hf_folder(tmp_path / name, "--no-anonymize", "--include-synthetic", "--split-seed", seed,
                         "--validation-fraction", "0.2")
    a, b, c = (split_trees(tmp_path / name) for name in "abc")
    assert a == b
    assert a != c
    for split in (a, c):
        assert split["train"].isdisjoint(split["validation"])
        assert len(split["train"] | split["validation"]) == 100
        assert 5 <= len(split["validation"]) <= 40
    rows = loaded(tmp_path / "a")
    for name in ("train", "validation"):  # every message of a tree is in its tree's split
        assert set(rows[name]["message_tree_id"]) == a[name]
    assert Message.objects.filter(tree_id__in=a["validation"]).count() == rows["validation"].num_rows


def test_a_tiny_export_may_have_an_empty_validation_split_and_says_so(tmp_path, finished_tree):
    out = tmp_path / "tiny"
    export_hf_folder(out, "--validation-fraction", "0")
    dataset = loaded(out)
    assert set(dataset) == {"train"} and dataset["train"].num_rows == 2
    assert dataset["train"].features == public_features()
    assert not (out / VALIDATION).exists()
    card = (out / "README.md").read_text()
    assert "The validation split is empty" in card and "| validation | 0 | 0 |" in card


def test_an_export_without_trees_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(CommandError, match="No tree matches"):
        export_hf_folder(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@needs_data
def test_values_round_trip_through_the_folder_into_an_empty_database(tmp_path, imported_100_trees):
    before = export_jsonl(tmp_path / "before.jsonl")
    export_hf_folder(tmp_path / "release", "--no-anonymize", "--include-synthetic")
    MessageTree.objects.all().delete()
    assert Message.objects.count() == 0

    assert "Imported 100 trees, 1167 messages" in import_(tmp_path / "release")

    assert export_jsonl(tmp_path / "after.jsonl") == before
    assert "skipped 100 existing trees" in import_(tmp_path / "release")  # idempotent, as for files


def test_a_folder_that_is_not_empty_is_refused_unless_forced(tmp_path, finished_tree):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="not empty"):
        export_hf_folder(out)
    assert [path.name for path in out.iterdir()] == ["notes.txt"]
    export_hf_folder(out, "--force", "--validation-fraction", "0")
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "data", "manifest.json"]
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]  # no temporary folder left behind


@pytest.mark.parametrize("fraction", ["1", "-0.1", "1.5"])
def test_a_validation_fraction_outside_0_to_1_is_refused(tmp_path, fraction):
    with pytest.raises(CommandError, match="validation fraction"):
        export_hf_folder(tmp_path / "out", "--validation-fraction", fraction)
    assert list(tmp_path.iterdir()) == []


def test_events_and_a_file_as_the_folder_are_refused(tmp_path):
    with pytest.raises(CommandError, match="no events column"):
        export_hf_folder(tmp_path / "out", "--events")
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(CommandError, match="is a file"):
        export_hf_folder(target)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file.txt"]


def test_import_of_a_folder_that_is_not_a_release_is_a_command_error(tmp_path):
    (tmp_path / "README.md").write_text("# not a release")
    with pytest.raises(CommandError, match="not a Hugging Face export folder"):
        import_(tmp_path)


def _zip_names(content: bytes) -> set[str]:
    return set(zipfile.ZipFile(io.BytesIO(content)).namelist())


RELEASE_FILES = {"oasst-hf/README.md", "oasst-hf/manifest.json", f"oasst-hf/{TRAIN}"}  # one tree: no validation


def test_researchers_download_the_hf_zip_from_the_api_and_others_are_refused(finished_tree, researchers_group):
    prompt, _ = finished_tree
    researcher = staff_member(researchers_group)
    response = token_client(researcher).get("/api/v1/exports/?records=hf&anonymize=s1&validation_fraction=0")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert 'filename="oasst-hf.zip"' in response["Content-Disposition"]
    content = b"".join(response.streaming_content)
    assert _zip_names(content) == RELEASE_FILES
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(content)).read("oasst-hf/manifest.json"))
    assert manifest["messages"] == 2 and manifest["anonymized"]
    assert str(prompt.pk).encode() not in zipfile.ZipFile(io.BytesIO(content)).read(f"oasst-hf/{TRAIN}")
    for outsider in (UserFactory(), staff_member()):
        assert token_client(outsider).get("/api/v1/exports/?records=hf").status_code == 403
    bad = token_client(researcher).get("/api/v1/exports/?records=hf&validation_fraction=1")
    assert bad.status_code == 400 and "validation_fraction" in bad.json()["detail"]


def test_the_admin_offers_the_hf_zip_to_researchers_not_to_moderators(client, finished_tree, researchers_group,
                                                                     moderators_group):
    prompt, _ = finished_tree
    client.force_login(staff_member(moderators_group))
    assert "download_export_hf" not in offered_actions(client)
    forged = admin_action(client, prompt.tree_id, "download_export_hf")
    assert not forged.streaming and forged.status_code == 302
    client.force_login(staff_member(researchers_group))
    assert "download_export_hf" in offered_actions(client)
    response = admin_action(client, prompt.tree_id, "download_export_hf")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    content = b"".join(response.streaming_content)
    names = _zip_names(content)  # the one tree is in train or, by its hash, in validation
    assert names in (RELEASE_FILES, RELEASE_FILES - {f"oasst-hf/{TRAIN}"} | {f"oasst-hf/{VALIDATION}"})
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(content)).read("oasst-hf/manifest.json"))
    assert manifest["trees"] == 1 and manifest["anonymized"] and manifest["trees_selected"] == 1
    assert str(prompt.tree_id) not in json.dumps(manifest)


@needs_data
def test_the_training_data_loaders_read_the_folder_as_the_tree_file(tmp_path, imported_100_trees):
    from training.data import load_groups, load_prompts
    from training.pairs import OASST, check_sources, source_sha256, training_split

    out = tmp_path / "release"
    export_hf_folder(out, "--no-anonymize", "--include-synthetic", "--validation-fraction", "0.3")

    def keys(groups):
        return {(group.tree_id, group.parent_id, tuple(reply.message_id for reply in group.replies),
                 group.conversation) for group in groups}

    assert keys(load_groups(out)) == keys(load_groups(TREES_FILE))
    assert len(load_prompts(out, kind="root")) == 100
    assert check_sources([out]) == [(out, OASST)]  # both splits as one source
    split = training_split([out], eval_fraction=0.2, seed=3)  # the reward model's own split by tree
    assert {pair.tree_id for pair in split.train_pairs}.isdisjoint({pair.tree_id for pair in split.eval_pairs})
    assert len(split.train_pairs) + len(split.eval_pairs) == 680  # every pair of the 100 trees (tests/training)
    assert split.data["sha256"] == source_sha256(out) == json.loads((out / "manifest.json").read_text())["sha256"]
