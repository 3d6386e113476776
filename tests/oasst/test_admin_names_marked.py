"""Model and field names the admin shows, and the task-language names on pages, go through gettext (issue 20):
with a German catalogue that holds them (written here, so the test does not depend on the shipped translations'
wording) the admin's headers, filters and labels and the language names come out in German; English is unchanged."""

import polib
import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse
from django.utils import translation
from django.utils.functional import Promise

from oasst.languages import LANGUAGES, language_choices
from tests.factories import UserFactory
from tests.tasks.builders import write_prompt
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

OUR_APPS = ("oasst", "tasks", "ranking", "training")

GERMAN = {
    "message tree": "Nachrichtenbaum",
    "message trees": "Nachrichtenbäume",
    "review state": "Prüfstatus",
    "undecided": "unentschieden",
    "language": "Sprache",
    "preferred language": "Bevorzugte Sprache",
    "training run": "Trainingslauf",
    "data file": "Datendatei",
    "moderation events": "Moderationsereignisse",
    "target type": "Zieltyp",
    "French": "Französisch",
    "Arabic": "Arabisch",
    "Spanish": "Spanisch",
}


@pytest.fixture
def german(settings, tmp_path):
    catalogue = polib.POFile()
    catalogue.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Plural-Forms": "nplurals=2; plural=(n != 1);"}
    for msgid, msgstr in GERMAN.items():
        catalogue.append(polib.POEntry(msgid=msgid, msgstr=msgstr))
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    catalogue.save_as_mofile(str(folder / "django.mo"))
    settings.LOCALE_PATHS = [tmp_path, *settings.LOCALE_PATHS]  # the first path wins


def admin_models():
    return [model for model in admin.site._registry if model._meta.app_label in OUR_APPS]


def test_every_model_of_our_apps_has_marked_names():
    unmarked = [
        model._meta.label for app in OUR_APPS for model in apps.get_app_config(app).get_models()
        if not (isinstance(model._meta.verbose_name, Promise) and isinstance(model._meta.verbose_name_plural, Promise))
    ]
    assert unmarked == []


def test_every_field_of_the_models_the_admin_shows_has_a_marked_name():
    assert {model._meta.label for model in admin_models()} >= {
        "oasst.User", "oasst.ModerationEvent", "tasks.Message", "tasks.MessageTree", "tasks.FlaggedMessage",
        "ranking.RankingResult", "training.TrainingRun"}
    unmarked = [
        f"{model._meta.label}.{field.name}" for model in admin_models() for field in model._meta.get_fields()
        if field.concrete and not field.auto_created and not isinstance(field.verbose_name, Promise)
    ]  # auto-created ids stay Django's "ID", the same word in our interface languages
    assert unmarked == []


def test_the_admin_lists_come_out_in_the_interface_language(client, german, small_trees):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, ui_language="de"))
    write_prompt(UserFactory(), text="What is entropy?")
    trees = client.get(reverse("admin:tasks_messagetree_changelist")).content.decode()
    assert "Nachrichtenbäume" in trees and "Sprache" in trees
    messages = client.get(reverse("admin:tasks_message_changelist")).content.decode()
    assert "Prüfstatus" in messages and "unentschieden" in messages
    users = client.get(reverse("admin:oasst_user_changelist")).content.decode()
    assert "Bevorzugte Sprache" in users
    events = client.get(reverse("admin:oasst_moderationevent_changelist")).content.decode()
    assert "Moderationsereignisse" in events and "Zieltyp" in events
    TrainingRun.objects.create(kind=TrainingRun.Kind.SFT, data_file="trees.jsonl", output_dir="out")
    runs = client.get(reverse("admin:training_trainingrun_changelist")).content.decode()
    assert "Trainingslauf" in runs and "Datendatei" in runs


def test_english_admin_headers_are_unchanged(client, small_trees):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    write_prompt(UserFactory(), text="What is entropy?")
    messages = client.get(reverse("admin:tasks_message_changelist")).content.decode()
    assert "Review state" in messages and "undecided" in messages
    trees = client.get(reverse("admin:tasks_messagetree_changelist")).content.decode()
    assert "Select message tree to change" in trees


def test_task_language_names_are_shown_in_the_interface_language(client, german):
    client.force_login(UserFactory(ui_language="de", preferred_language="fr"))
    page = client.get(reverse("dashboard")).content.decode()
    assert "Französisch" in page  # the dashboard's task language and the header's picker
    assert "Arabisch" in client.get(reverse("messages")).content.decode()  # the message filter
    with translation.override("de"):
        names = [name for _, name in language_choices()]
        assert names.index("Arabisch") < names.index("Französisch") < names.index("Spanisch")  # German order


def test_language_codes_and_english_names_are_unchanged():
    assert str(LANGUAGES["pt-BR"]) == "Portuguese (Brazil)"
    assert language_choices()[0] == ("ar", "Arabic")
