"""A local S3 service for the object-storage tests: moto's standalone S3 server on 127.0.0.1, reached
through s3fs with the credentials and endpoint from the environment, as a deployment reaches S3."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from upath import UPath

from kpi_pipeline.storage import location

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free local port, with ``AWS_*`` variables pointing at it set in this
    process (and so in every process it starts) for the block; yields those variables."""
    import s3fs

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    variables = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {name: os.environ.get(name) for name in [*variables, "AWS_PROFILE"]}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on port {port}") from None
                time.sleep(0.1)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(variables)
        s3fs.S3FileSystem.clear_instance_cache()
        yield variables
    finally:
        server.terminate()
        server.wait(timeout=10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        s3fs.S3FileSystem.clear_instance_cache()


def new_bucket(prefix: str = "kpi") -> UPath:
    """A new, empty bucket on the running server, as ``s3://<bucket>/<prefix>`` (the pipeline's own
    kind of path: no cached listings, so the test sees what every process wrote)."""
    bucket = f"kpi-test-{uuid.uuid4().hex[:12]}"
    root = location(f"s3://{bucket}/{prefix}")
    assert isinstance(root, UPath)
    root.fs.mkdir(bucket)
    return root


def upload(local: Path, remote: UPath) -> None:
    """Copy every file under the local folder to the same relative keys under ``remote``."""
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        remote.fs.put_file(str(path), f"{remote.path}/{path.relative_to(local).as_posix()}")
