"""Every error the server sends, in OpenAI's shape: ``{"error": {message, type, param, code}}``.

400 names the bad field in ``param``; 401 a missing or wrong API key; 404 an unknown model or
run; 500 only for a bug (with the exception's message).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from alphagrad.serve.schemas import ErrorDetail, ErrorResponse

ERROR_RESPONSES = {status: {"model": ErrorResponse} for status in (400, 401, 404)}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def error_json(detail: ErrorDetail) -> str:
    return ErrorResponse(error=detail).model_dump_json()


def _response(status: int, detail: ErrorDetail) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=detail).model_dump(), status_code=status)


def _field(loc: tuple) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``."""
    parts = [p for p in loc if p not in ("body", "query", "path")]
    name = ""
    for p in parts:
        if isinstance(p, int):
            name += f"[{p}]"
        elif "[" not in str(p) and "-" not in str(p):  # not pydantic's union branch labels
            name += f".{p}" if name else str(p)
    return name or None


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = _field(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        message, field = "the request body is not valid JSON", None
    elif field is None:
        message = f"the request body must be a JSON object ({message})"
    text = f"{field}: {message}" if field else message
    return _response(400, ErrorDetail(message=text, type="invalid_request_error", param=field,
                                      code="invalid_value"))


def install(app: FastAPI) -> None:
    """Route every failure through OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _response(exc.status, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation(request, exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _response(exc.status_code, ErrorDetail(message=str(exc.detail),
                                                      type="invalid_request_error", code=code))
