"""The one place where Tenure errors become HTTP answers."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from tenure.api.responses import json_response
from tenure.errors import AuthError, NotFoundError, ValidationError


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ValidationError)
    async def invalid(_: Request, exc: ValidationError) -> Response:
        return json_response({"success": False, "error": exc.as_dict(), "message": str(exc)}, status_code=400)

    @app.exception_handler(AuthError)
    async def unauthorised(_: Request, exc: AuthError) -> Response:
        return json_response(
            {"success": False, "error": {"field": "writeKey", "reason": str(exc)}},
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="tenure"'},
        )

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> Response:
        return json_response({"success": False, "message": str(exc)}, status_code=404)
