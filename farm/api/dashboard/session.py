"""Signing in to the dashboard: a token typed once becomes an HttpOnly cookie.

``GET /login`` asks for a token, ``POST /login`` checks it with the API's own
:class:`~farm.api.auth.Authenticator` and sets the ``farm_token`` cookie (HttpOnly,
SameSite=Strict, Secure over https); ``POST /logout`` clears it.  The cookie is read by
the same dependency as a bearer header, so the pages and the JSON API the page's buttons
call share one rule; unsafe requests authenticated by the cookie must also carry
``X-Requested-With: farm`` (see :mod:`farm.api.auth`), which the page's script sends.

Pages redirect a caller without a working token to the login form instead of answering
the API's JSON 401 (:func:`page_reader`).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from farm.api.auth import COOKIE, _principal, scope_dep
from farm.api.dashboard.render import render
from farm.domain.auth import Principal, Scope
from farm.errors import Unauthorized

router = APIRouter(include_in_schema=False)
_read = scope_dep(Scope.READ)


class LoginRequired(Exception):
    """Raised by a page's dependency: send the browser to the login form, then back."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: ``next`` never leaves the farm
    (``//host`` and ``/\\host`` are other hosts to a browser, so they are refused too)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(c < " " or c == "\x7f" for c in value)
    ):
        return "/"
    return value


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return request.url.path + query


async def page_reader(request: Request) -> Principal:
    """A page's dependency: the caller holds ``read``; without a working token, the login
    form (403 for a token without ``read`` stays an error: signing in again won't help)."""
    try:
        # The API's own resolution (bearer header, else the cookie), cached on the request.
        principal = await _principal(request)
    except Unauthorized:
        raise LoginRequired(_here(request)) from None
    return await _read(principal)


ReaderDep = Annotated[Principal, Depends(page_reader)]
# The HTML fragments the page's script polls answer the API's 401 instead: a fetch
# cannot follow a redirect to a form, and the script says "sign in again".
FragmentReaderDep = Annotated[Principal, Depends(_read)]


def login_redirect(_: Request, exc: Exception) -> Response:
    """Exception handler for :class:`LoginRequired`."""
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in form (public)."""
    return render(request, "login.html", next=local_path(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the token; on success set the cookie and go to ``next`` (a local path)."""
    # A urlencoded form of two fields; the body is already capped by BodyLimit.
    form = parse_qs((await request.body()).decode(errors="replace"), max_num_fields=10)
    token = (form.get("token") or [""])[0].strip()
    target = local_path((form.get("next") or ["/"])[0])
    try:
        request.app.state.auth.principal(token)
    except Unauthorized as exc:
        page = render(request, "login.html", next=target, error=str(exc))
        page.status_code = 401
        return page
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,  # the page's script never sees the token
        samesite="strict",  # not sent on requests started by other sites
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the cookie and go back to the login form."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


__all__ = [
    "FragmentReaderDep",
    "LoginRequired",
    "ReaderDep",
    "local_path",
    "login_redirect",
    "page_reader",
    "router",
]
