"""Content-addressed blob storage, safe artifact archives and the worker's HTTP client.

Workers on other hosts reach blobs only over HTTP, by ``sha256:<hex>`` digest:
:class:`RegistryClient` talks to ``farm.api.routers.blobs``, which serves a
:class:`BlobStore` (on a single host, :class:`FilesystemBlobStore`).
"""

from farm.registry.archive import pack, unpack
from farm.registry.blobstore import BlobStore, FilesystemBlobStore
from farm.registry.client import RegistryClient
from farm.registry.digests import BlobInfo, digest_hex, hash_file

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
