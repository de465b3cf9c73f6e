"""Registry benchmark: a 1 GiB artifact through the blob HTTP API vs a plain file copy.

A subprocess on 127.0.0.1 serves farm's blob API as the API process does: the blob
router on uvicorn plus the blob data plane, over a FilesystemBlobStore in a temp dir;
the same run copies the same file with ``shutil.copyfile`` on the same disk.
Reported: throughput of upload (``RegistryClient.put_file``: hashed, fsynced and
renamed by the server) and download (``RegistryClient.download_to``: verified by
the server while sending, hashed by the client), each as a ratio of the plain copy
(target >= 50 %), the same two through the ASGI routes alone (the path every HTTP
client can use), and the server's peak RSS (VmHWM, target < 150 MB).

    python -m bench.registry_bench [--size-mib 1024] [--no-report]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from farm.registry.client import RegistryClient, pump
from farm.registry.store.digests import BlobInfo

CHUNK = 1024 * 1024
RATIO_TARGET = 0.5
RSS_TARGET_MB = 150.0


def serve(root: Path, port: int) -> None:
    """The server side (run in the subprocess): blob router, 2 GiB limit, no access log."""
    from types import SimpleNamespace

    import uvicorn
    from fastapi import FastAPI

    from farm.api.routers import blobs, registry
    from farm.registry.store.filesystem import FilesystemBlobStore
    from farm.registry.transfer.server import BlobDataServer

    app = FastAPI()
    store = FilesystemBlobStore(root)
    limit = 2 * 1024**3
    app.state.blobstore = store
    app.state.settings = SimpleNamespace(max_blob_bytes=limit, blob_data_url=None)
    app.state.blob_data = BlobDataServer(store, "127.0.0.1", 0, max_blob_bytes=limit).start()
    app.include_router(blobs.router)
    app.include_router(registry.router)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with path.open("wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(8 * CHUNK, remaining))
            hasher.update(block)
            f.write(block)
            remaining -= len(block)
    return f"sha256:{hasher.hexdigest()}"


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            yield block


def _download_asgi(http: httpx.Client, digest: str, dest: Path) -> float:
    """Seconds to GET a blob from the ASGI route into ``dest`` while hashing it."""
    hasher = hashlib.sha256()
    start = time.perf_counter()
    with dest.open("wb") as out, http.stream("GET", f"/api/v1/blobs/{digest}") as stream:
        stream.raise_for_status()
        # How farm's RegistryClient receives from the API when there is no data plane:
        # raw chunks, hashed and written on a second thread while the next ones arrive.
        pump(stream.iter_raw(), lambda b: (hasher.update(b), out.write(b)))
    seconds = time.perf_counter() - start
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise RuntimeError("downloaded bytes do not match")
    return seconds


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6  # kB (KiB) -> MB
    return float("nan")


def _cold() -> bool:
    """Flush and drop the page cache so each side reads from the disk, as a real artifact
    does; without it a copy of a just-written file is a memcpy (3 GB/s here) and the
    ratio measures the cache, not the farm. Needs root; False where not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the benchmark server exited")
        try:
            httpx.get(url + "/api/v1/blobs/sha256:" + "0" * 64, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the benchmark server did not start")


def run(size: int) -> dict[str, float]:
    """One measurement in a temp dir next to the repo (same disk), cleaned up after."""
    work = Path(tempfile.mkdtemp(prefix="farm-registry-bench-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        src = work / "artifact.bin"
        digest = _make_file(src, size)
        cold = _cold()

        start = time.perf_counter()
        shutil.copyfile(src, work / "copy.bin")
        copy_s = time.perf_counter() - start
        (work / "copy.bin").unlink()
        _cold()
        # The upload fsyncs before it answers; a durable copy is the like-for-like floor.
        start = time.perf_counter()
        shutil.copyfile(src, work / "copy.bin")
        with open(work / "copy.bin", "rb+") as f:
            os.fsync(f.fileno())
        durable_s = time.perf_counter() - start
        (work / "copy.bin").unlink()

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.registry_bench",
                "--serve",
                str(work / "store"),
                str(port),
            ],
            cwd=Path(__file__).resolve().parent.parent,
        )
        _wait_up(url, proc)
        base_rss = _vm_hwm_mb(proc.pid)
        info = BlobInfo(digest, size)
        blob = work / "store" / "blobs" / "sha256" / digest[7:9] / digest[7:]
        with RegistryClient(url, timeout=600) as client:
            _cold()
            start = time.perf_counter()
            client.put_file(src, info)  # the data plane, as a worker uploads an artifact
            upload_s = time.perf_counter() - start
            _cold()
            start = time.perf_counter()
            client.download_to(digest, work / "download.bin", durable=False)
            download_s = time.perf_counter() - start
        rss_data_plane = _vm_hwm_mb(proc.pid)
        # The same bytes through the ASGI routes alone (what curl or any HTTP client uses).
        blob.unlink()
        with httpx.Client(base_url=url, timeout=600) as http:
            _cold()
            start = time.perf_counter()
            resp = http.put(
                f"/api/v1/blobs/{digest}",
                content=_chunks(src),
                headers={"Content-Length": str(size)},
            )
            asgi_upload_s = time.perf_counter() - start
            resp.raise_for_status()
            _cold()
            asgi_download_s = _download_asgi(http, digest, work / "download.bin")
        return {
            "size_mib": size / CHUNK,
            "copy_s": copy_s,
            "cold": float(cold),
            "durable_s": durable_s,
            "upload_s": upload_s,
            "download_s": download_s,
            "upload_ratio": copy_s / upload_s,
            "download_ratio": copy_s / download_s,
            "asgi_upload_s": asgi_upload_s,
            "asgi_download_s": asgi_download_s,
            "rss_idle_mb": base_rss,
            "rss_data_plane_mb": rss_data_plane,
            "rss_peak_mb": _vm_hwm_mb(proc.pid),
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)


def markdown(r: dict[str, Any]) -> str:
    """The report section."""

    def mbs(seconds: float) -> str:
        return f"{r['size_mib'] / seconds:,.0f} MiB/s"

    def verdict(ok: bool) -> str:
        return "meets target" if ok else "**below target**"

    up_ok = r["upload_ratio"] >= RATIO_TARGET
    down_ok = r["download_ratio"] >= RATIO_TARGET
    rss_ok = r["rss_peak_mb"] < RSS_TARGET_MB
    return (
        "## Registry: 1 GiB artifact over the blob HTTP API\n\n"
        f"`python -m bench.registry_bench`: one {r['size_mib']:.0f} MiB random file; a "
        "subprocess serving what the API process serves for blobs (the blob router on "
        "uvicorn and the blob data plane) over a FilesystemBlobStore; farm's "
        "`RegistryClient` on the other side; and `shutil.copyfile` of the same file on "
        "the same disk in the same run. Ratios are taken per round, then the median of "
        f"{r['rounds']:.0f} rounds is shown (per round: upload {r['upload_rounds']}, "
        f"download {r['download_rounds']}); "
        + (
            "page cache dropped before each transfer, so every side reads from the disk"
            if r["cold"]
            else "page cache NOT dropped (not root): ratios are against a memcpy"
        )
        + ".\n\n"
        "| path | time | throughput | vs plain copy |\n|---|---|---|---|\n"
        f"| `shutil.copyfile` | {r['copy_s']:.2f} s | {mbs(r['copy_s'])} | 100 % |\n"
        f"| `shutil.copyfile` + fsync | {r['durable_s']:.2f} s | "
        f"{mbs(r['durable_s'])} | {r['copy_s'] / r['durable_s']:.0%} |\n"
        f"| **upload** (data plane PUT: server hashes, fsyncs, renames) | {r['upload_s']:.2f} s "
        f"| {mbs(r['upload_s'])} | {r['upload_ratio']:.0%} ({verdict(up_ok)}: ≥ 50 %) |\n"
        f"| **download** (data plane GET: server verifies, client hashes) | "
        f"{r['download_s']:.2f} s | {mbs(r['download_s'])} | {r['download_ratio']:.0%} "
        f"({verdict(down_ok)}: ≥ 50 %) |\n"
        f"| upload through the ASGI route (any HTTP client) | {r['asgi_upload_s']:.2f} s | "
        f"{mbs(r['asgi_upload_s'])} | {r['copy_s'] / r['asgi_upload_s']:.0%} |\n"
        f"| download through the ASGI route | {r['asgi_download_s']:.2f} s | "
        f"{mbs(r['asgi_download_s'])} | {r['copy_s'] / r['asgi_download_s']:.0%} |\n\n"
        f"Server peak RSS (VmHWM): {r['rss_peak_mb']:.0f} MB (idle {r['rss_idle_mb']:.0f} MB, "
        f"{r['rss_data_plane_mb']:.0f} MB after the data plane transfers, before the ASGI ones; "
        f"{verdict(rss_ok)}: < {RSS_TARGET_MB:.0f} MB). Bodies stream: the data plane holds "
        "one 4 MiB window per hashing thread, whatever the blob's size.\n\n"
        "Why two paths: through uvicorn and httpx every byte is copied into Python objects "
        "several times in 64 KiB pieces, which alone takes longer than the copy. The data "
        "plane lets the kernel move the bytes (sendfile out of the store, splice from the "
        "socket into the temp file); the one pass in user space is the hashing, on other "
        "threads. On this 2-core host that pass is the limit: sha256 runs at 1.8 GB/s, so "
        "a download verified by sha256 on both ends could not reach half a copy's speed; "
        "the server checks the blob's XXH3-128 at-rest checksum instead (15x cheaper), and the "
        "client still checks sha256. Single rounds swing by about 15 points on this "
        "shared machine.\n"
    )


def main() -> None:
    """Run once, print and record the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--no-report", action="store_true", help="print only")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    parser.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    # The page cache makes single runs swing by 30 %: report the median of rounds.
    runs = [run(args.size_mib * CHUNK) for _ in range(args.rounds)]
    result: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result["rounds"] = float(args.rounds)
    for name in ("upload", "download"):
        result[f"{name}_rounds"] = " / ".join(f"{r[name + '_ratio']:.0%}" for r in runs)
    text = markdown(result)
    print(text)
    if not args.no_report:
        from bench.report import update_section

        update_section("registry", text)


if __name__ == "__main__":
    main()
