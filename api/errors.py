"""One JSON error shape for every 4xx/5xx: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

import logging

from flask import Flask, Response, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def to_response(self) -> tuple[Response, int]:
        body: dict[str, str] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return jsonify(error=body), self.status


# Stable codes for the HTTP errors Flask/Werkzeug raise themselves.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(err: APIError) -> tuple[Response, int]:
        return err.to_response()

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> tuple[Response, int]:
        status = err.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = err.description or err.name
        if status == 413:
            # A route may raise its own limit (POST /v1/blobs takes many images at once).
            limit = (
                request.max_content_length
                if has_request_context()
                else app.config.get("MAX_CONTENT_LENGTH")
            )
            message = f"the request body is larger than the limit of {limit} bytes"
        response, status = APIError(status, code, message).to_response()
        if isinstance(err, MethodNotAllowed) and err.valid_methods:
            # A 405 must say what is allowed (RFC 9110).
            response.headers["Allow"] = ", ".join(sorted(err.valid_methods))
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> tuple[Response, int]:
        # Logged with its traceback here; the client gets no internals.
        log.exception("unhandled error")
        return APIError(500, "internal_error", "internal server error").to_response()
