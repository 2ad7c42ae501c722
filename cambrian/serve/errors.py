"""Errors in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}`` with a matching HTTP status."""

from __future__ import annotations


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized() -> APIError:
    return APIError(
        401, "Incorrect API key provided (send it as 'Authorization: Bearer <key>').", code="invalid_api_key"
    )


def model_not_found(name: str, served: str) -> APIError:
    return APIError(
        404, f"The model '{name}' does not exist; this server serves '{served}'.", param="model", code="model_not_found"
    )


def too_large(limit: int) -> APIError:
    return APIError(413, f"Request body larger than {limit} bytes.", code="request_too_large")


def busy(limit: int) -> APIError:
    return APIError(
        429,
        f"Server busy: {limit} requests are already queued or running; retry later.",
        type="rate_limit_exceeded",
        code="rate_limit_exceeded",
    )


def shutting_down() -> APIError:
    return APIError(503, "The server is shutting down.", type="server_error", code="server_shutting_down")


def server_error(message: str) -> APIError:
    return APIError(500, message, type="server_error", code="internal_error")
