"""Errors: the API's `{code, message, hint}` as typed exceptions."""

from __future__ import annotations

from typing import Optional


class BangerError(Exception):
    """An operation failed; `code`, `message` and `hint` are the daemon's."""

    code = "internal"

    def __init__(self, code: str, message: str, hint: Optional[str] = None):
        super().__init__(message if not hint else f"{message} (hint: {hint})")
        self.code = code
        self.message = message
        self.hint = hint


class NotFound(BangerError):
    pass


class Conflict(BangerError):
    pass


class InvalidArgument(BangerError):
    pass


class InUse(BangerError):
    pass


class FailedPrecondition(BangerError):
    pass


class Unavailable(BangerError):
    pass


class Timeout(BangerError):
    pass


class ProtocolError(BangerError):
    """bangerd (or a guest agent) sent something this SDK does not understand."""

    def __init__(self, message: str):
        super().__init__("internal", message)


BY_CODE = {
    "not_found": NotFound,
    "conflict": Conflict,
    "invalid_argument": InvalidArgument,
    "in_use": InUse,
    "failed_precondition": FailedPrecondition,
    "unavailable": Unavailable,
    "timeout": Timeout,
}


def from_api(err: dict) -> BangerError:
    code = str(err.get("code", "internal"))
    cls = BY_CODE.get(code, BangerError)
    return cls(code, str(err.get("message", "unknown error")), err.get("hint"))
