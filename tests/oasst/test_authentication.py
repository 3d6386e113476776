"""oasst.authentication: DRF's token scheme with the user read by one precompiled statement."""

import pytest
from rest_framework.authentication import TokenAuthentication as DrfTokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient

from oasst.authentication import TokenAuthentication
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_user_is_the_one_drf_would_load_field_for_field(django_assert_num_queries):
    user = UserFactory(display_name="Zoë", streak_days=3)
    key = Token.objects.create(user=user).key
    expected, _ = DrfTokenAuthentication().authenticate_credentials(key)
    with django_assert_num_queries(1):
        loaded, token = TokenAuthentication().authenticate_credentials(key)
    assert token.key == key and token.user_id == user.pk
    for field in user._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(expected, field.attname), field.name
    assert not loaded._state.adding and loaded._state.db == "default"
    loaded.display_name = "Changed"
    loaded.save(update_fields=["display_name"])  # a normal model instance: saves as one
    user.refresh_from_db()
    assert user.display_name == "Changed"


def test_unknown_keys_and_inactive_users_are_refused_as_drf_refuses_them():
    with pytest.raises(AuthenticationFailed, match="Invalid token"):
        TokenAuthentication().authenticate_credentials("0" * 40)
    inactive = UserFactory(is_active=False)
    with pytest.raises(AuthenticationFailed, match="inactive"):
        TokenAuthentication().authenticate_credentials(Token.objects.create(user=inactive).key)


@pytest.mark.parametrize("header", ["Token nope", "Token", "Token a b", "Bearer x"])
def test_the_api_answers_401_with_the_scheme_for_a_bad_token(header):
    response = APIClient().get("/api/v1/users/me/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
