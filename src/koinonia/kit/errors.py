"""Domain errors. Services raise these (never HTTPException) so the same code runs in workers;
one handler renders them as {"error": code, "detail": text, "fields": {...}}."""

from __future__ import annotations

from typing import Any


class KoinoniaError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        fields: dict[str, Any] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields
        self.headers = headers
        self.extra = extra or {}
        if code:
            self.code = code

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.fields:
            out["fields"] = self.fields
        out.update(self.extra)
        return out


class BadRequest(KoinoniaError):
    status, code = 400, "bad_request"


class ValidationFailed(KoinoniaError):
    status, code = 422, "validation_error"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls(f"{name}: {message}", fields={name: message})


class Unauthorized(KoinoniaError):
    status, code = 401, "unauthorized"


class Forbidden(KoinoniaError):
    status, code = 403, "forbidden"


class NotFound(KoinoniaError):
    status, code = 404, "not_found"

    def __init__(self, what: str, ident: object | None = None) -> None:
        super().__init__(f"{what} {ident} not found" if ident is not None else f"{what} not found")


class Conflict(KoinoniaError):
    status, code = 409, "conflict"


class PlanLimitReached(KoinoniaError):
    status, code = 402, "plan_limit_reached"

    def __init__(self, resource: str, *, limit: int, usage: int, requested: int = 1) -> None:
        super().__init__(
            f"Your plan allows {limit} {resource}; {usage} used, {requested} more requested."
            " Upgrade your plan to add more.",
            extra={
                "resource": resource,
                "limit": limit,
                "usage": usage,
                "requested": requested,
                "remaining": max(limit - usage, 0),
            },
        )


class PayloadTooLarge(KoinoniaError):
    status, code = 413, "payload_too_large"


class RateLimited(KoinoniaError):
    status, code = 429, "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(
            detail, headers={"Retry-After": str(retry_after)}, extra={"retry_after": retry_after}
        )


class InternalError(KoinoniaError):
    status, code = 500, "internal_error"


class DatabaseUnavailable(KoinoniaError):
    """The database cannot serve the request now (down, restarting, connection lost, pool
    exhausted): a 503 the client retries after `retry_after` seconds, not a 500."""

    status, code = 503, "database_unavailable"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(
            "the database is unavailable; retry shortly",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )
