"""What an executor is asked to run and what it answers: pure data, no Docker.

The worker turns a persisted job into a :class:`ContainerJob`, hands it to an
:class:`Executor` and records the :class:`RunResult`. Keeping this module free of
the Docker SDK lets the coordinator, the worker and their tests use these types
without a daemon (and lets a fake executor stand in for the real one). The
container isolation policy (:func:`isolated_host_config`) and the small parsers
the Docker executor needs live here too, so they can be read and tested alone.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from farm.domain.specs import ServiceSpec
from farm.errors import ConfigError

GiB = 1024**3

#: Why a run ended other than by the job's own exit; ``None`` means a normal exit.
#: ``worker_error`` is a fault of the worker itself (a bug, a broken host), not the job's.
Reason = Literal["timeout", "canceled", "oom", "image_not_found", "executor_error", "worker_error"]
REASONS: tuple[Reason, ...] = (
    "timeout",
    "canceled",
    "oom",
    "image_not_found",
    "executor_error",
    "worker_error",
)

#: Network modes a job may get. Chosen by the farm's settings, never by the job,
#: because "host" gives the job the worker's own network (and its 127.0.0.1).
NETWORK_MODES: tuple[str, ...] = ("none", "host")

TCP_LISTEN = "0A"  # socket state "LISTEN" in /proc/net/tcp


@dataclass(frozen=True)
class Limits:
    """Resource ceilings of one job container (services get the same each)."""

    memory_bytes: int = 2 * GiB
    nano_cpus: int = 2_000_000_000  # 2 CPUs
    pids: int = 1024

    def __post_init__(self) -> None:
        # Zero or negative values mean "unlimited" to Docker: refuse them here so
        # a typo in the settings cannot silently lift the ceiling.
        if self.memory_bytes <= 0 or self.nano_cpus <= 0 or self.pids <= 0:
            raise ConfigError(f"executor limits must be positive: {self}")


@dataclass(frozen=True)
class Mount:
    """A bind mount from the worker host into the job container."""

    source: str
    target: str
    read_only: bool = False


# Everything else is dropped. What stays is what a root build needs to install
# packages and lay out files: CHOWN/FOWNER/FSETID/DAC_OVERRIDE for tar, dpkg and
# `make install` on files it does not own (the bind-mounted workspace belongs to
# the worker's uid), SETUID/SETGID for apt's `_apt` sandbox, useradd, su/gosu,
# KILL for a root harness stopping children that dropped to another uid (scoped
# to the container's pid namespace). Left out on purpose: SETPCAP (only needed to
# reshape capability sets, which builds never do), SETFCAP (postinst `setcap`
# falls back to setuid, and file caps are inert under no-new-privileges),
# NET_BIND_SERVICE (in a private netns Docker already opens low ports to all
# uids; under host networking a job must not take the host's ports), MKNOD,
# AUDIT_WRITE, NET_RAW, NET_ADMIN, SYS_ADMIN and the rest.
CAP_ADD: tuple[str, ...] = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")


def isolated_host_config(network: str, limits: Limits, mounts: Iterable[Mount]) -> dict[str, Any]:
    """Keyword arguments for docker-py's ``create_host_config``: the isolation policy.

    Kept as plain data here so the policy can be read and tested without Docker.
    """
    return {
        "network_mode": network,
        "privileged": False,
        "cap_drop": ["ALL"],
        "cap_add": list(CAP_ADD),
        "security_opt": ["no-new-privileges"],
        "pids_limit": limits.pids,
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,  # equal: no swap on top of the limit
        "nano_cpus": limits.nano_cpus,
        "init": True,  # docker-init reaps zombies and forwards signals
        "ipc_mode": "private",
        # Output reaches farm through attach, which does not depend on the log
        # driver; "none" spares dockerd from also writing every line to disk
        # (moby#37471). `docker logs` is thereby unavailable, by design.
        "log_config": {"type": "none", "config": {}},
        "mounts": [
            {"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
            for m in mounts
        ],
    }


@dataclass(frozen=True)
class ContainerJob:
    """Everything needed to run one job attempt in a fresh container."""

    image: str
    command: tuple[str, ...]
    # None: clear the image's ENTRYPOINT so ``command`` runs as is (a shell
    # script must not be fed to some image's custom entrypoint); a tuple: use it,
    # as GitLab's ``image: entrypoint:`` asks.
    entrypoint: tuple[str, ...] | None
    env: dict[str, str]
    mounts: tuple[Mount, ...]
    workdir: str
    labels: dict[str, str]
    timeout: float
    limits: Limits = field(default_factory=Limits)
    network: str = "none"
    services: tuple[ServiceSpec, ...] = ()
    name: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("a container job needs a command")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        if self.network not in NETWORK_MODES:
            # The network comes from the farm's settings, hence a ConfigError.
            raise ConfigError(f"network must be one of {NETWORK_MODES}, not {self.network!r}")


@dataclass(frozen=True)
class RunResult:
    """How a run ended.

    ``exit_code`` is the job's own exit status; it is ``None`` when the job did not
    end by itself (timeout, cancel) or never started (image missing, runtime
    failure). An OOM kill keeps the code (usually 137) with reason ``"oom"``.
    """

    exit_code: int | None
    reason: Reason | None
    message: str = ""
    started_at: float | None = None  # time.time() when the container started
    finished_at: float | None = None  # time.time() when it was seen to stop

    @property
    def succeeded(self) -> bool:
        """True for a normal exit with status 0."""
        return self.reason is None and self.exit_code == 0


@runtime_checkable
class ImagePuller(Protocol):
    """An executor that can fetch a missing image from a registry (bounded, remembered)."""

    def pull_image(self, image: str) -> bool:
        """Whether ``image`` is present after one bounded pull attempt."""
        ...


class Executor(Protocol):
    """Runs a :class:`ContainerJob` to completion; one call per job attempt."""

    def run(
        self,
        job: ContainerJob,
        on_output: Callable[[bytes], None],
        should_cancel: Callable[[], bool],
    ) -> RunResult:
        """Run ``job``, streaming output to ``on_output`` in order as it arrives.

        ``should_cancel`` is polled while the job runs; when it returns True the
        job is killed and the result's reason is ``"canceled"``.
        """
        ...

    def image_exists(self, image: str) -> bool:
        """Whether ``image`` is available to run without a registry."""
        ...


def missing_image_message(image: str) -> str:
    """The one-line explanation given when an image cannot be found or pulled."""
    return (
        f"image {image!r} is not available locally (no registry reachable); "
        "build it with scripts/images.sh or docker build"
    )


def listening_ports(proc_net_tcp: str) -> set[int]:
    """Ports in LISTEN state in the text of /proc/net/tcp and/or /proc/net/tcp6."""
    ports: set[int] = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        # Data rows look like "0: 00000000:1E61 00000000:0000 0A ..."; headers don't.
        if len(fields) < 4 or not fields[0].endswith(":") or fields[3] != TCP_LISTEN:
            continue
        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def exposed_tcp_ports(image_config: dict[str, Any]) -> set[int]:
    """TCP ports an image declares with EXPOSE (``{"7777/tcp": {}}``)."""
    exposed = image_config.get("ExposedPorts") or {}
    ports = set()
    for spec in exposed:
        port, _, proto = str(spec).partition("/")
        if proto in ("", "tcp") and port.isdigit():
            ports.add(int(port))
    return ports


def resolve_image(
    image: str,
    aliases: dict[str, str],
    exists: Callable[[str], bool],
    pull: Callable[[str], bool] | None = None,
) -> tuple[str, str | None]:
    """The image to run and, when an alias stood in, why: ``(image, note)``.

    The real image first: present, or pulled (``pull``: one bounded attempt, fails
    fast without a registry). Only when neither, a registry-less farm maps it to a
    local equivalent: the first matching pattern whose target exists wins, in order.
    """
    if exists(image) or (pull is not None and pull(image)):
        return image, None
    for pattern, target in aliases.items():
        if fnmatch.fnmatchcase(image, pattern) and exists(target):
            return (
                target,
                f"image {image!r} is not available locally; using {target!r} (FARM_IMAGE_ALIASES)",
            )
    return image, None
