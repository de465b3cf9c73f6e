"""``farm artifacts``: list, download and verify artifacts, checked by digest.

``verify --provenance`` checks a build's signed SLSA provenance offline: the DSSE
signature against a public key the user holds (``--key``), then that every subject's
digest matches the bytes actually downloaded.  Without ``--key`` the farm's key is
fetched from the API, which only proves consistency with that server (said so).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import click

from farm.cli.artifact_files import get_file
from farm.cli.client import ApiClient
from farm.errors import DigestMismatch, SignatureError
from farm.registry.client import RegistryClient
from farm.registry.provenance import (
    key_id,
    load_public_key,
    mismatched_subjects,
    subject_digests,
    verify_envelope,
)
from farm.settings import get_settings


@click.group()
def artifacts() -> None:
    """List, download and verify artifacts."""


@artifacts.command("ls")
@click.argument("build_id", type=int, required=False)
@click.option("--project", default=None, help="only this project")
@click.option("--ref", default=None, help="only builds of this branch or tag")
@click.option("--commit", default=None, help="only builds of this commit (or sha prefix)")
@click.option("--name", default=None, help="only artifacts with this name")
@click.option("--kind", default=None, help="archive, dotenv, deliverable or provenance")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@click.pass_context
def ls(
    ctx: click.Context,
    build_id: int | None,
    project: str | None,
    ref: str | None,
    commit: str | None,
    name: str | None,
    kind: str | None,
    as_json: bool,
) -> None:
    """Artifacts of BUILD_ID, or of every build matching the filters (newest first)."""
    params = {"build": build_id, "project": project, "ref": ref, "commit": commit}
    params.update({"name": name, "kind": kind})
    query = {k: v for k, v in params.items() if v is not None}
    rows: list[dict[str, Any]] = ApiClient(ctx.obj).json("GET", "/api/v1/artifacts", params=query)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for a in rows:
        job = a.get("job_name") or "-"
        click.echo(
            f"{a['digest']}  {a['size']:>10}  #{a['build']} {a['project']}@{a['ref']} "
            f"{a['commit'][:10]}  {job}  {a['name']}  ({a['kind']})"
        )


def _download(client: ApiClient, digest: str) -> tuple[str, int]:
    """Stream an artifact only to hash it; (digest of what arrived, size)."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in client.stream(f"/api/v1/artifacts/{digest}"):
        hasher.update(chunk)
        size += len(chunk)
    return "sha256:" + hasher.hexdigest(), size


@artifacts.command("get")
@click.argument("args", nargs=-1, required=True, metavar="DIGEST | BUILD JOB PATH")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="where to write (required with DIGEST; with PATH default: its file name, - stdout)",
)
@click.pass_context
def get(ctx: click.Context, args: tuple[str, ...], output: Path | None) -> None:
    """Download the artifact DIGEST to OUTPUT, verifying its sha256; or, with three
    arguments, the file PATH out of job JOB's (a name or an id) artifacts in BUILD."""
    if len(args) == 3:
        get_file(ctx.obj, *args, output)
        return
    if len(args) != 1:
        raise click.UsageError("give DIGEST -o FILE, or BUILD JOB PATH [-o FILE]")
    if output is None:
        raise click.UsageError("artifacts get DIGEST needs -o FILE")
    digest = args[0]
    # The workers' client: the blob data plane when reachable, resumes, sha256-checked.
    with RegistryClient(ctx.obj, token=get_settings().client_token("admin")) as registry:
        registry.download_to(digest, output, durable=False)
    click.echo(f"{output}: {digest} verified")


def _envelope(client: ApiClient, source: str) -> dict[str, Any]:
    """A DSSE envelope from a file, or (a build id) from the API."""
    path = Path(source)
    try:
        text = path.read_text() if path.is_file() or not source.isdigit() else None
    except OSError as exc:
        raise SignatureError(f"cannot read provenance {source}: {exc}") from None
    if text is None:
        return dict(client.json("GET", f"/api/v1/builds/{int(source)}/provenance"))
    try:
        return dict(json.loads(text))
    except ValueError as exc:
        raise SignatureError(f"{source} is not a JSON DSSE envelope: {exc}") from None


@artifacts.command("verify")
@click.argument("digest", required=False)
@click.option(
    "--provenance",
    "provenance",
    default=None,
    metavar="FILE|BUILD",
    help="check this signed provenance (a file, or a build id to fetch it)",
)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="the farm's public key (PEM) to trust; default: fetch it from the API",
)
@click.pass_context
def verify(
    ctx: click.Context, digest: str | None, provenance: str | None, key: Path | None
) -> None:
    """Re-hash DIGEST by downloading it; with --provenance, check signature and subjects."""
    client = ApiClient(ctx.obj)
    if provenance is None:
        if digest is None:
            raise click.UsageError("give a DIGEST, or --provenance FILE|BUILD")
        actual, size = _download(client, digest)
        if actual != digest:
            raise DigestMismatch(f"{digest}: downloaded bytes hash to {actual}")
        click.echo(f"{digest}: verified ({size} bytes)")
        return
    if key is None:
        pem = client.request("GET", "/api/v1/keys/provenance.pub").content
        click.echo("note: key fetched from the farm itself; pass --key to verify offline", err=True)
    else:
        pem = key.read_bytes()
    public = load_public_key(pem)
    statement = verify_envelope(_envelope(client, provenance), public)
    meta = statement["predicate"]["runDetails"]["metadata"]
    params = statement["predicate"]["buildDefinition"]["externalParameters"]
    click.echo(
        f"signature: ok (key {key_id(public)[:16]}) — build {meta.get('invocationId')} "
        f"of {params.get('repo')} {params.get('ref')}@{str(params.get('commit'))[:12]}"
    )
    wanted = subject_digests(statement)
    if digest is not None:
        wanted = {n: d for n, d in wanted.items() if d == digest}
        if not wanted:
            raise SignatureError(f"{digest} is not a subject of this provenance")
    got: dict[str, str] = {}
    for name, want in wanted.items():
        got[name], size = _download(client, want)
        mark = "ok" if got[name] == want else "MISMATCH"
        click.echo(f"  {mark:8} {want}  {size:>10}  {name}")
    problems = mismatched_subjects({"subject": _subjects(wanted)}, got)
    if problems:
        raise SignatureError("subject digests do not match: " + "; ".join(problems))
    click.echo(f"verified: {len(wanted)} subject(s) match the signed provenance")


def _subjects(digests: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": n, "digest": {"sha256": d.split(":", 1)[1]}} for n, d in digests.items()]
