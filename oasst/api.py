"""API plumbing shared by every app: the one error format, and the user and token endpoints.

Every API error answers `{"detail": "...", "code": "..."}`; invalid input adds `errors`
(field -> messages).
"""

import logging

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from oasst.throttles import WindowThrottle

User = get_user_model()

logger = logging.getLogger(__name__)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Field name -> messages, for invalid input.")


class ServiceRefused(exceptions.APIException):
    """A Django ValidationError raised by a service, carried to the client with its code and status."""

    def __init__(self, error: DjangoValidationError):
        self.status_code = getattr(error, "status_code", status.HTTP_400_BAD_REQUEST)
        code = getattr(error, "code", None) or "invalid"
        super().__init__(detail=" ".join(error.messages), code=code)
        self.field_errors = error.message_dict if hasattr(error, "error_dict") else None


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        field, messages = next(iter(detail.items()))
        message = _first_message(messages)
        return message if field in ("non_field_errors", "__all__") else f"{field}: {message}"
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


def error_body(exc: exceptions.APIException) -> dict:
    detail = exc.detail
    if isinstance(detail, (dict, list)):
        body = {"detail": _first_message(detail), "code": exc.default_code}
        body["errors"] = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        return body
    body = {"detail": str(detail), "code": getattr(detail, "code", None) or exc.default_code}
    field_errors = getattr(exc, "field_errors", None)
    if field_errors:
        body["errors"] = field_errors
    return body


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = ServiceRefused(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, (OperationalError, InterfaceError)):  # the database restarts or is unreachable
        logger.exception("database unavailable")
        body = {"detail": gettext("The database is unavailable; try again shortly."), "code": "database_unavailable"}
        return Response(body, status=503, headers={"Retry-After": "5"})
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = error_body(exc)
    return response


class UserSerializer(serializers.ModelSerializer):
    tos_accepted = serializers.BooleanField(source="has_accepted_tos", read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "display_name", "preferred_language", "tos_accepted",
                  "show_on_leaderboard", "streak_days", "date_joined"]
        read_only_fields = fields


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=254, help_text="Username or email.")
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField()


class TokenObtainView(APIView):
    """Exchange a username (or email) and password for the user's API token. The password is checked
    by allauth, so failed attempts count toward the same per-account limit as the log-in page
    (5 in 5 minutes): spreading a guessing attack over many addresses does not help."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [WindowThrottle]
    throttle_scope = "token"

    @extend_schema(request=TokenRequestSerializer,
                   responses={200: TokenResponseSerializer, 400: ErrorSerializer, 429: ErrorSerializer})
    def post(self, request):
        from allauth.account.adapter import get_adapter

        body = TokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            user = get_adapter(request._request).authenticate(request._request, **body.validated_data)
        except DjangoValidationError:  # allauth's too_many_login_attempts
            raise exceptions.Throttled(
                wait=300, detail=gettext("Too many failed log-in attempts for this account.")) from None
        if user is None:
            refusal = gettext("Unable to log in with provided credentials.")
            raise exceptions.ValidationError({"non_field_errors": [refusal]}, code="authorization")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})
