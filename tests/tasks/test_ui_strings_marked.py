"""The strings of tasks/, ranking/ and training/ that people see go through gettext (issue 20): with a German
catalogue that holds them (written here, so the test does not depend on the shipped translations' wording),
task pages, service refusals, moderation pages, choice labels and training forms come out in German."""

import polib
import pytest
from django.urls import reverse
from django.utils import translation

from oasst.errors import ServiceError
from tasks import services
from tasks.models import Message, TreeState
from tasks.tree_manager import label_value_error
from tests.factories import UserFactory
from tests.tasks.builders import write_prompt
from tests.tasks.test_views import new_task

pytestmark = pytest.mark.django_db

GERMAN = {
    "Write a prompt": "Schreibe einen Prompt",  # task title (tasks.views.TASK_TITLES)
    "The text is longer than %(max)s characters.": "Der Text ist länger als %(max)s Zeichen.",  # service refusal
    "Ready For Export": "Bereit zum Export",  # TreeState label
    "%(name)s must be a number.": "%(name)s muss eine Zahl sein.",  # tree_manager.label_value_error
    "Conversation tree": "Gesprächsbaum",  # admin/tasks/_tree.html
    "No edits.": "Keine Bearbeitungen.",  # admin/tasks/message/change_form.html
    "Lowest-scored replies": "Am schlechtesten bewertete Antworten",  # admin index
    "Delete with subtree…": "Mit Teilbaum löschen …",  # admin action
    "learning rate": "Lernrate",  # training launch form
}


@pytest.fixture
def german(settings, tmp_path):
    catalogue = polib.POFile()
    catalogue.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Plural-Forms": "nplurals=2; plural=(n != 1);"}
    for msgid, msgstr in GERMAN.items():
        catalogue.append(polib.POEntry(msgid=msgid, msgstr=msgstr, flags=["python-format"] if "%(" in msgid else []))
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    catalogue.save_as_mofile(str(folder / "django.mo"))
    settings.LOCALE_PATHS = [tmp_path, *settings.LOCALE_PATHS]  # the first path wins


def test_a_task_page_and_its_refusal_come_out_in_the_interface_language(client, german, small_trees):
    client.force_login(UserFactory(ui_language="de"))
    task = new_task(client, "initial_prompt")
    assert "Schreibe einen Prompt" in client.get(reverse("task", args=[task.pk])).content.decode()

    response = client.post(reverse("task-submit", args=[task.pk]), {"text": "x" * 2001})
    assert response.status_code == 400
    assert "Der Text ist länger als 2000 Zeichen." in response.content.decode()
    assert not Message.objects.exists()


def test_choice_labels_and_label_checks_are_translated(german):
    with translation.override("de"):
        assert str(TreeState.READY_FOR_EXPORT.label) == "Bereit zum Export"
        assert label_value_error("quality", "good") == "quality muss eine Zahl sein."
    assert str(TreeState.READY_FOR_EXPORT.label) == "Ready For Export"  # English stays as it was


def test_the_moderation_pages_come_out_in_the_interface_language(client, german, small_trees, moderator):
    moderator.ui_language = "de"
    moderator.save(update_fields=["ui_language"])
    client.force_login(moderator)
    message = write_prompt(UserFactory(), text="What is entropy?")
    page = client.get(reverse("admin:tasks_message_change", args=[message.pk])).content.decode()
    assert "Gesprächsbaum" in page and "Keine Bearbeitungen." in page
    listing = client.get(reverse("admin:tasks_message_changelist")).content.decode()
    assert "Am schlechtesten bewertete Antworten" in listing and "Mit Teilbaum löschen …" in listing


def test_the_training_launch_form_comes_out_in_the_interface_language(client, german):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, ui_language="de"))
    page = client.get(reverse("admin:training_trainingrun_add")).content.decode()
    assert "Lernrate" in page


def test_english_pages_are_unchanged(client, small_trees):
    client.force_login(UserFactory())
    task = new_task(client, "initial_prompt")
    assert "Write a prompt" in client.get(reverse("task", args=[task.pk])).content.decode()
    with pytest.raises(ServiceError, match="The text is longer than 2000 characters."):
        services.text_submit(user=task.user, task_id=task.pk, text="x" * 2001)
