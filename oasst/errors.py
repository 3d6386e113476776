"""Domain errors raised by services. Each is a Django ValidationError (so forms show it) with a
machine-readable code and the HTTP status the API answers with."""

from django.core.exceptions import ValidationError


class ServiceError(ValidationError):
    status_code = 400

    def __init__(self, message: str, *, code: str):
        super().__init__(message, code=code)


class Conflict(ServiceError):
    """The request is valid but clashes with the current state (taken, done, expired, duplicate)."""

    status_code = 409


class Forbidden(ServiceError):
    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class RateLimited(ServiceError):
    status_code = 429
