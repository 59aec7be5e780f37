"""An S3-compatible server for the backup tests and benchmark: versitygw (its Go module, hack/tools/versitygw)
serving a local directory over TLS on 127.0.0.1 (or on the node IP, where pods reach it), with a certificate
of the cluster CA, started and stopped like every process of the harness. Its root access key is the test's
credential."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.etcdproxy.operator.plugins.module_utils import s3store

from .config import BIN_DIR
from .pki import Pki
from .probes import free_port, https_get, wait_for
from .processes import stop_pid


@dataclass
class S3Server:
    dir: Path
    pki: Pki
    access_key: str = field(default_factory=lambda: "epo" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca(self) -> Path:
        return self.pki.path("kube-ca")

    def start(self) -> S3Server:
        self.port = free_port()
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.dir / "meta").mkdir(exist_ok=True)
        log = self.dir / "versitygw.log"
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                [str(BIN_DIR / "versitygw"), "--port", f"{self.host}:{self.port}",
                 "--cert", str(self.pki.path("s3")), "--key", str(self.pki.path("s3", "key")),
                 "posix", "--sidecar", str(self.dir / "meta"), str(data)],
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                env={"ROOT_ACCESS_KEY_ID": self.access_key, "ROOT_SECRET_ACCESS_KEY": self.secret_key,
                     "PATH": "/usr/bin:/bin"})

        def answers() -> bool:  # any S3 answer (403 without a signature) means it serves
            try:
                return https_get(self.port, "/", self.ca, host=self.host)[0] in (200, 403)
            except OSError:
                return False

        wait_for("versitygw", answers, 30, self.proc, log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None

    def client(self):
        """A boto3 client as the operator makes one (module_utils/s3store.py), with the root credentials."""
        return s3store.client(s3store.Location(self.endpoint, "", ""), (self.access_key, self.secret_key), str(self.ca))
