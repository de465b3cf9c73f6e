"""Pure parts of the executor: data types, isolation policy, parsers, labels."""

from __future__ import annotations

import pytest

from farm.errors import ConfigError
from farm.executor.base import (
    CAP_ADD,
    ContainerJob,
    Limits,
    Mount,
    RunResult,
    exposed_tcp_ports,
    isolated_host_config,
    listening_ports,
    missing_image_message,
)
from farm.executor.reaper import job_labels


def _job(**overrides: object) -> ContainerJob:
    fields: dict[str, object] = {
        "image": "img",
        "command": ("sh", "/farm/run.sh"),
        "entrypoint": None,
        "env": {},
        "mounts": (),
        "workdir": "/ws",
        "labels": {},
        "timeout": 10.0,
    }
    fields.update(overrides)
    return ContainerJob(**fields)  # type: ignore[arg-type]


def test_limits_defaults_and_validation() -> None:
    assert Limits() == Limits(2 * 1024**3, 2_000_000_000, 1024)
    with pytest.raises(ConfigError):
        Limits(pids=0)
    with pytest.raises(ConfigError):
        Limits(memory_bytes=-1)


def test_container_job_validation() -> None:
    assert _job().network == "none" and _job().limits == Limits()
    with pytest.raises(ConfigError):
        _job(network="bridge")
    with pytest.raises(ValueError):
        _job(command=())
    with pytest.raises(ValueError):
        _job(timeout=0)


def test_run_result_succeeded() -> None:
    assert RunResult(0, None).succeeded
    assert not RunResult(1, None).succeeded
    assert not RunResult(137, "oom").succeeded


def test_isolation_policy() -> None:
    mounts = [Mount("/host/ws", "/ws"), Mount("/host/scripts", "/farm", read_only=True)]
    hc = isolated_host_config("none", Limits(1024, 10, 7), mounts)
    assert hc["network_mode"] == "none" and hc["privileged"] is False
    assert hc["cap_drop"] == ["ALL"]
    assert not {"NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "MKNOD"} & set(CAP_ADD)
    assert hc["security_opt"] == ["no-new-privileges"]
    assert (hc["mem_limit"], hc["memswap_limit"], hc["nano_cpus"], hc["pids_limit"]) == (
        1024,
        1024,
        10,
        7,
    )
    assert hc["init"] is True and hc["ipc_mode"] == "private"
    assert hc["log_config"]["type"] == "none"
    assert hc["mounts"][1] == {
        "Type": "bind",
        "Source": "/host/scripts",
        "Target": "/farm",
        "ReadOnly": True,
    }
    assert not any("docker.sock" in m["Source"] for m in hc["mounts"])


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0100007F:A530 0100007F:1E61 06 00000000:00000000 03:0000176F 00000000     0
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1E61 00000000000000000000000000000000:0000 0A 0
"""


def test_listening_ports_reads_tcp_and_tcp6() -> None:
    # 0x1F90 = 8080 (IPv4 listen), 0x1E61 = 7777 (IPv6 listen); TIME_WAIT ignored.
    assert listening_ports(PROC_NET_TCP) == {8080, 7777}
    assert listening_ports("") == set()


def test_exposed_tcp_ports() -> None:
    config: dict[str, object] = {"ExposedPorts": {"7777/tcp": {}, "53/udp": {}, "5432": {}}}
    assert exposed_tcp_ports(config) == {7777, 5432}
    assert exposed_tcp_ports({"ExposedPorts": None}) == set()


def test_missing_image_message_is_one_actionable_line() -> None:
    msg = missing_image_message("x")
    assert "'x'" in msg and "scripts/images.sh" in msg and "\n" not in msg


def test_job_labels() -> None:
    assert job_labels(7, "j", 2, "w1") == {
        "farm.build": "7",
        "farm.job": "j",
        "farm.attempt": "2",
        "farm.worker": "w1",
    }
