"""The web dashboard, served by the API process: pages for builds, jobs, deliverables,
releases and rollouts, rendered on the server from the same store and documents as
``/api/v1`` (it is one more client of them, never a second source of truth).

:func:`install` adds its routes, its static files and the login redirect to the app.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from farm.api.dashboard import pages, session
from farm.api.dashboard.render import STATIC_DIR

__all__ = ["install"]

STATIC_PREFIX = "/static"


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: pages, ``/login``, ``/logout``, ``/static``."""
    app.include_router(session.router)
    app.include_router(pages.router)
    app.add_exception_handler(session.LoginRequired, session.login_redirect)
    # CSS and the small script only: no data, so no token is needed to fetch them.
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")
