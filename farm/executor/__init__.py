"""Running one job attempt in an isolated container, and cleaning up after crashes.

``base`` holds the pure types (no Docker import), ``docker`` the executor that
uses a local dockerd, ``reaper`` the labels and the removal of orphaned
containers. The Docker-backed parts are imported from their modules so that
code needing only the types never loads the Docker SDK.
"""

from farm.executor.base import ContainerJob, Executor, Limits, Mount, Reason, RunResult

__all__ = ["ContainerJob", "Executor", "Limits", "Mount", "Reason", "RunResult"]
