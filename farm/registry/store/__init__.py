"""Where blobs live: the :class:`BlobStore` interface, its filesystem and S3 backends,
and the digest/checksum helpers they share."""

from farm.registry.store.base import BlobStore, checked_chunks
from farm.registry.store.digests import BlobInfo, digest_hex, hash_file
from farm.registry.store.filesystem import FilesystemBlobStore

__all__ = [
    "BlobInfo",
    "BlobStore",
    "FilesystemBlobStore",
    "checked_chunks",
    "digest_hex",
    "hash_file",
]
