"""Domain errors. Stores and services raise these; the web boundary turns them into HTTP errors."""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error that reaches a client, with its HTTP status and a stable code."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthorized(SwitchboardError):
    """No valid credentials: the client must sign in (again)."""

    status = 401
    code = "unauthorized"


class Conflict(SwitchboardError):
    status = 409
    code = "conflict"


class TooManyRequests(SwitchboardError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: int, details: object | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class NotFound(SwitchboardError):
    status = 404
    code = "not_found"


class PermissionDenied(SwitchboardError):
    status = 403
    code = "forbidden"


class ValidationFailed(SwitchboardError):
    status = 422
    code = "validation_failed"


class DependencyUnavailable(SwitchboardError):
    """A backing service (Kafka, MongoDB, Redis, S3) did not answer; the request changed nothing."""

    status = 503
    code = "dependency_unavailable"
