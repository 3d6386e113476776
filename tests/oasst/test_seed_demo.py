"""seed_demo: a demo admin, created once; refused when DEBUG is off."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_seed_demo_creates_the_admin_once(settings):
    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")
    assert get_user_model().objects.filter(username="admin").count() == 1


@pytest.mark.django_db
def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo")
    assert not get_user_model().objects.exists()
