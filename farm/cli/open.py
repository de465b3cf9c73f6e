"""``farm open [BUILD]``: the dashboard's page of a build (or the builds list) in a browser.

The dashboard is served by the API itself, so its address is the API's URL
(``--api``/``FARM_API_URL``).  The URL is always printed, so on a host without a browser
(a server over SSH) it can be copied; ``--print`` only prints it.
"""

from __future__ import annotations

import webbrowser

import click

from farm.cli.client import ApiClient


def dashboard_url(api_url: str, build_id: int | None = None) -> str:
    """The dashboard's address of ``build_id`` (the builds list when None)."""
    base = api_url.rstrip("/")
    return f"{base}/builds/{build_id}" if build_id is not None else f"{base}/"


@click.command("open")
@click.argument("build_id", metavar="[BUILD]", type=click.IntRange(min=1), required=False)
@click.option("--print", "print_only", is_flag=True, help="print the address, open no browser")
@click.pass_context
def open_cmd(ctx: click.Context, build_id: int | None, print_only: bool) -> None:
    """Open the dashboard at BUILD's pipeline graph (default: the builds list)."""
    if build_id is not None:
        # A build that does not exist is one clear error line here, not a 404 page later.
        with ApiClient(ctx.obj) as api:
            api.json("GET", f"/api/v1/builds/{build_id}")
    url = dashboard_url(ctx.obj, build_id)
    click.echo(url)
    if print_only:
        return
    if not webbrowser.open(url):
        click.echo("no browser found here: open the address above (sign in with a token)", err=True)
