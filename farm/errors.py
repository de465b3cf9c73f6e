"""The one error tree of farm.

Every error a user can cause or meet is a :class:`FarmError`; the API maps the
tree to HTTP status codes at its edge and the CLI prints ``str(error)`` as one
line. Nothing else is raised on purpose.

::

    FarmError
    ├── ConfigError              settings that cannot work (bad URL, missing binary)
    ├── PipelineError            a pipeline file that cannot be run (carries diagnostics)
    │   └── PipelineFilteredOut  workflow:rules decided no build is created
    ├── SourceError              repository, ref or commit that cannot be read
    ├── NotFound                 a build, job, artifact or release that does not exist
    ├── Conflict                 a state change that is no longer possible
    ├── InvalidRequest           well-formed, but asks for the impossible (release a red build)
    ├── RegistryError            blob storage problems
    │   ├── DigestMismatch       bytes whose sha256 is not the one promised
    │   ├── BlobNotFound         no blob with that digest
    │   ├── CorruptBlob          stored bytes no longer match their digest
    │   ├── UploadError          bad offset, size over the limit, unknown session
    │   ├── UnsafeArchive        an archive member escaping its root
    │   └── SignatureError       a provenance envelope whose signature does not verify
    ├── ExecutorError            the container runtime failed (not the job)
    │   └── ImageNotFound        the job's image is not available locally
    └── ServiceUnavailable       Redis, Docker or the API does not answer
"""

from __future__ import annotations

from dataclasses import dataclass


class FarmError(Exception):
    """Base of every error farm raises on purpose; ``str()`` is one readable line."""

    http_status = 500


class ConfigError(FarmError):
    """Settings or host setup that cannot work."""

    http_status = 500


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a pipeline file, located as ``file:line:col``."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PipelineError(FarmError):
    """A pipeline file that cannot be run; holds every problem found."""

    http_status = 422

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str) -> None:
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic("<pipeline>", 0, 0, diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = diagnostics
        first = str(diagnostics[0]) if diagnostics else "invalid pipeline"
        more = f" (and {len(diagnostics) - 1} more)" if len(diagnostics) > 1 else ""
        super().__init__(first + more)


class PipelineFilteredOut(PipelineError):
    """``workflow: rules`` decided that no build is created for this commit."""

    http_status = 422


class SourceError(FarmError):
    """A repository, ref or commit that cannot be read."""

    http_status = 422


class NotFound(FarmError):
    """Something asked for by id or digest does not exist."""

    http_status = 404


class Conflict(FarmError):
    """A state change that is no longer possible (e.g. cancel a finished build)."""

    http_status = 409


class InvalidRequest(FarmError):
    """A well-formed request that asks for something impossible (e.g. release a red build)."""

    http_status = 422


class RegistryError(FarmError):
    """Blob storage problems."""

    http_status = 500


class DigestMismatch(RegistryError):
    """Bytes whose sha256 is not the digest that was promised."""

    http_status = 400


class BlobNotFound(RegistryError, NotFound):
    """No blob with that digest."""

    http_status = 404


class CorruptBlob(RegistryError):
    """Stored bytes no longer hash to their digest; never served."""

    http_status = 500


class UploadError(RegistryError):
    """A bad upload: wrong offset, over the size limit, unknown session."""

    http_status = 400


class UnsafeArchive(RegistryError):
    """An archive member that would escape its root (``..``, absolute, symlink out)."""

    http_status = 400


class SignatureError(RegistryError):
    """A signed statement whose signature, key or subjects do not check out."""

    http_status = 400


class ExecutorError(FarmError):
    """The container runtime failed, not the job itself."""

    http_status = 500


class ImageNotFound(ExecutorError):
    """The job's image does not exist locally and cannot be pulled."""

    http_status = 422


class ServiceUnavailable(FarmError):
    """A service farm depends on (Redis, Docker, the API) does not answer."""

    http_status = 503
