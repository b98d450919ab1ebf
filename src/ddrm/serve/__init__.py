"""Serving: a recommendation service (no HTTP) and its ASGI app; needs the ``ddrm[serve]`` extra for HTTP."""

from .service import InvalidRequest, NotFound, RecommendationService

__all__ = ["RecommendationService", "NotFound", "InvalidRequest"]
