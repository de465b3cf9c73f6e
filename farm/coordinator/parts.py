"""What the parts of the coordinator may use of each other.

:class:`farm.coordinator.service.Coordinator` is assembled from mixins, one module per
concern (outbox, reports, actions, recovery). Each part reads the coordinator's state
and calls a few methods another part defines; :class:`CoordinatorParts` declares them
once, for the type checker. At run time it adds nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from farm.coordinator.ports import Blobs, Dispatcher, Store
from farm.coordinator.result_cache import ResultCache
from farm.coordinator.timeline import MarkBuffer
from farm.settings import Settings

if TYPE_CHECKING:
    from farm.coordinator.groups import ResourceGroups
    from farm.domain.progress import Shape
    from farm.domain.records import BuildRecord, JobRecord
    from farm.domain.statuses import BuildStatus


class CoordinatorParts:
    """The coordinator's state and cross-part methods, as its mixins see them."""

    store: Store
    blobs: Blobs
    dispatcher: Dispatcher
    settings: Settings
    results: ResultCache | None
    up_since: datetime
    clock: Callable[[], float]
    _lock: threading.Lock
    _epoch: str | None
    _sending: set[int]
    _failures: int
    _retry_at: float
    _started: set[int]
    _marks: MarkBuffer

    if TYPE_CHECKING:  # defined by Coordinator or by one of its parts

        @property
        def groups(self) -> ResourceGroups: ...

        def _advance(self, build_id: int, build: BuildRecord | None = None) -> BuildStatus: ...

        def _shape(self, build_id: int) -> Shape: ...

        def build_changed(self, build_id: int) -> None: ...

        def _release(self, job: JobRecord) -> None: ...

        def sweep(self, *, restart: bool = False) -> int: ...

        def _publish(
            self,
            items: Sequence[tuple[JobRecord, float | None]],
            build: BuildRecord | None = None,
            *,
            force: bool = False,
        ) -> int: ...
