"""The artifact registry: content-addressed blobs and what is built on them.

- ``store/``: where blobs live (the :class:`BlobStore` Protocol, filesystem, S3, digests);
- ``transfer/``: the data plane that moves whole blobs at disk speed (server, client,
  wire format, zero-copy system calls);
- ``client``: :class:`RegistryClient`, how workers and the CLI move blobs over HTTP;
- ``archive`` (safe artifact tarballs), ``provenance`` (signed SLSA statements),
  ``gc`` (mark-and-sweep over a store), ``factory`` (wiring from settings).

Workers on other hosts reach blobs only over HTTP, by ``sha256:<hex>`` digest.
"""

from farm.registry.archive import pack, unpack
from farm.registry.client import RegistryClient
from farm.registry.store import BlobStore, FilesystemBlobStore
from farm.registry.store.digests import BlobInfo, digest_hex, hash_file

__all__ = [
    "BlobInfo",
    "BlobStore",
    "FilesystemBlobStore",
    "RegistryClient",
    "digest_hex",
    "hash_file",
    "pack",
    "unpack",
]
