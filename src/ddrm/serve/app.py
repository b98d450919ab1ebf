"""The ASGI app (FastAPI): health, per-user and batch recommendations, fold-in for new users, and a web page.

Errors are one sentence in ``{"detail": "..."}``: 404 for an unknown user, 422 for anything else the client got
wrong (k outside 1..1000, unknown item ids in a history, malformed JSON, a wrong field).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from ..errors import DDRMError
from .service import MAX_K, InvalidRequest, NotFound, RecommendationService

ENV_PREFIX = "DDRM_SERVE_"


class Item(BaseModel):
    item_id: str
    rank: int
    score: float
    title: str | None = None
    genres: str | None = None


class Recommendations(BaseModel):
    user_id: str | None = Field(description="raw user id; null for a user given by an item history")
    model: str
    items: list[Item]
    history_size: int | None = None


class BatchRequest(BaseModel):
    """Either ``users`` (known raw user ids) or ``history`` (raw item ids of a user not in training)."""

    model_config = ConfigDict(extra="forbid")
    users: list[str] | None = Field(None, max_length=1000)
    history: list[str] | None = Field(None, max_length=100_000)
    k: int = Field(20, ge=1, le=MAX_K)
    model: Literal["ddrm", "backend"] | None = None


class BatchResponse(BaseModel):
    results: list[Recommendations]


def _sentence(exc: RequestValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
    if err.get("type") == "json_invalid":
        return "the request body is not valid JSON."
    msg = str(err.get("msg", "invalid value")).rstrip(".")
    return f"{loc}: {msg}." if loc else f"{msg}."


def create_app(service: RecommendationService) -> FastAPI:
    """The app around a loaded :class:`RecommendationService`."""
    app = FastAPI(title="ddrm", version=__version__,
                  description="Top-K recommendations from a DDRM (or backend) checkpoint; raw ids in and out.")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _sentence(exc)}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(DDRMError)
    async def _bad(request: Request, exc: DDRMError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/health")
    async def health() -> dict:
        """Status, model kind, backend, dataset fingerprint, n_users, n_items."""
        return service.health()

    @app.get("/users")
    async def users(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=10_000)) -> dict:
        """A page of raw user ids."""
        return service.users(offset, limit)

    @app.get("/users/{user_id}/history")
    async def history(user_id: str) -> dict:
        """The user's training items."""
        return {"user_id": user_id, "items": service.history(user_id)}

    @app.get("/users/{user_id}/recommendations", response_model=Recommendations, response_model_exclude_none=True)
    async def recommend(user_id: str, k: int = Query(20, ge=1, le=MAX_K),
                        model: Literal["ddrm", "backend"] | None = None) -> dict:
        """Top-k items for a known user, seen items excluded."""
        return service.recommend_user(user_id, k, model)

    @app.post("/recommendations", response_model=BatchResponse, response_model_exclude_none=True)
    async def batch(req: BatchRequest) -> dict:
        """A batch of known users, or one new user given by an item history (folded in, see the README)."""
        if (req.users is None) == (req.history is None):
            raise InvalidRequest("give exactly one of 'users' (known user ids) or 'history' (item ids).")
        if req.users is not None:
            return {"results": service.recommend_users(req.users, req.k, req.model)}
        return {"results": [service.recommend_history(req.history or [], req.k, req.model)]}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files("ddrm.serve").joinpath("page.html").read_text(encoding="utf-8")

    return app


def service_from_env() -> RecommendationService:
    """A service configured by ``DDRM_SERVE_CHECKPOINT`` / ``_DATA`` (JSON) / ``_ITEMS`` / ``_DEVICE`` (workers)."""
    env = os.environ
    return RecommendationService(env[ENV_PREFIX + "CHECKPOINT"], data_overrides=json.loads(env.get(
        ENV_PREFIX + "DATA", "{}")), items_file=env.get(ENV_PREFIX + "ITEMS") or None,
        device=env.get(ENV_PREFIX + "DEVICE", "cpu"))


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: each worker process loads the model once."""
    import torch

    torch.set_num_threads(int(os.environ.get(ENV_PREFIX + "THREADS", "1")))
    return create_app(service_from_env())
