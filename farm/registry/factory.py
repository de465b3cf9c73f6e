"""Wiring the registry from settings: which blob store, which signing key, the provenance hook.

Kept apart from the stores themselves so the API (and tools like the benchmark) build
them the same way, and so ``boto3`` is imported only when ``FARM_BLOB_STORE=s3``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farm.domain.records import BuildRecord
from farm.domain.statuses import ArtifactKind, BuildStatus
from farm.errors import ConfigError
from farm.registry.provenance import build_statement, canonical, load_or_create_key, sign_statement
from farm.registry.store import BlobStore, FilesystemBlobStore
from farm.registry.transfer import zerocopy
from farm.registry.transfer.server import Authorize, BlobDataServer
from farm.settings import Settings

log = logging.getLogger("farm.registry")

PROVENANCE_NAME = "provenance.intoto.json"
PROVENANCE_KIND = ArtifactKind.PROVENANCE


def make_blob_store(settings: Settings) -> BlobStore:
    """The store ``FARM_BLOB_STORE`` names: ``fs`` (default) or ``s3``."""
    if settings.blob_store == "fs":
        return FilesystemBlobStore(settings.blob_dir)
    if settings.blob_store == "s3":
        return _s3_store(settings)
    raise ConfigError(f"unknown FARM_BLOB_STORE {settings.blob_store!r}: use fs or s3")


def _s3_store(settings: Settings) -> BlobStore:
    """An S3BlobStore for ``FARM_S3_*``; creates the bucket if it does not exist."""
    try:
        import boto3

        from farm.registry.store.s3 import S3BlobStore
    except ImportError as exc:  # boto3 is the optional `s3` extra
        raise ConfigError("FARM_BLOB_STORE=s3 needs boto3: pip install 'farm[s3]'") from exc
    secret = settings.s3_secret_access_key
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )
    store = S3BlobStore(client, settings.s3_bucket, settings.s3_prefix)
    store.ensure_bucket()
    return store


def make_data_plane(
    settings: Settings, blobs: BlobStore, authorize: Authorize | None = None
) -> BlobDataServer | None:
    """The blob data plane for this store, bound but not started; None where it cannot run.

    It needs a local filesystem store and Linux's splice/sendfile.  A port that is
    taken is logged, not fatal: clients then move blobs through the API, slower.
    """
    if not (settings.blob_data_plane and zerocopy.available()):
        return None
    if not isinstance(blobs, FilesystemBlobStore):
        return None
    try:
        return BlobDataServer(
            blobs,
            settings.api_host,
            settings.resolved_blob_port,
            max_blob_bytes=settings.max_blob_bytes,
            authorize=authorize,
        )
    except OSError as exc:
        log.error(
            "blob data plane not started on %s:%s (%s); blobs go through the API",
            settings.api_host,
            settings.resolved_blob_port,
            exc,
        )
        return None


def builder_id(settings: Settings) -> str:
    """SLSA ``builder.id``: configured, else this farm's API URL."""
    return settings.provenance_builder_id or f"{settings.resolved_api_url}/builder"


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The farm's provenance key under ``FARM_DATA_DIR/keys`` (generated on first start)."""
    return load_or_create_key(settings.key_dir)


class ArtifactLedger(Protocol):
    """Where a stored blob is recorded as an artifact of a build (the store)."""

    def add_artifact(
        self, *, build_id: int, job_id: int | None, name: str, kind: str, digest: str, size: int
    ) -> object:
        """Record ``digest`` as an artifact of ``build_id``."""


@dataclass
class ProvenanceRecorder:
    """``Coordinator.on_build_finished`` hook: sign and store provenance of green builds."""

    store: ArtifactLedger
    blobs: BlobStore
    key: Ed25519PrivateKey
    builder: str

    def __call__(self, build: BuildRecord) -> None:
        """Record provenance for ``build`` if it succeeded; never raises.

        The hook runs inside the request that reported the last job; a failure here
        must not fail that report, so it is logged and the build stays green (without
        provenance, which ``GET /builds/{id}/provenance`` then reports as missing).
        """
        if build.status != BuildStatus.SUCCESS:
            return
        try:
            self.record(build)
        except Exception as exc:
            log.error("could not record provenance of build %s: %s", build.id, exc)

    def record(self, build: BuildRecord) -> str:
        """Build, sign and store the envelope; returns its digest."""
        envelope = sign_statement(build_statement(build, self.builder), self.key)
        info = self.blobs.put_stream(iter([canonical(envelope)]))
        self.store.add_artifact(
            build_id=build.id,
            job_id=None,
            name=PROVENANCE_NAME,
            kind=PROVENANCE_KIND,
            digest=info.digest,
            size=info.size,
        )
        log.info("build %s: provenance %s", build.id, info.digest)
        return info.digest
