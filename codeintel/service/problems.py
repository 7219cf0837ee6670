"""RFC 9457 problem details for every error the HTTP API returns."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from codeintel.errors import CodeIntelError, Problem, problem_of

__all__ = ["PROBLEM_JSON", "Problem", "problem_response", "problem_status", "install_problem_handlers"]

PROBLEM_JSON = "application/problem+json"
_BASE = "https://codeintel.dev/problems/"


def problem_response(status: int, title: str, detail: str, type_: str = "about:blank", instance: str | None = None, **extra: Any) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def problem_status(exc: BaseException) -> tuple[int, str, str]:
    """(status, title, problem type URI) of the problem an error becomes."""
    status, title, slug = problem_of(exc)
    return status, title, "about:blank" if slug == "about:blank" else _BASE + slug


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, exc.type, instance=request.url.path, **exc.extra)

    @app.exception_handler(CodeIntelError)
    async def _codeintel(request: Request, exc: CodeIntelError):
        status, title, type_ = problem_status(exc)
        return problem_response(status, title, str(exc), type_, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            field = ".".join(loc) or "body"
            message = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
            errors.append({"field": field, "message": message})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(422, "Invalid request", detail, _BASE + "invalid-request", instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem_response(exc.status_code, str(exc.detail), str(exc.detail), instance=request.url.path)
