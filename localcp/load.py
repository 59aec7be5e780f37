"""A tenant client under load for tests: one long-lived connection (as an API server keeps) writing and
reading as fast as it can in a thread, counting what succeeded and recording every failure."""

from __future__ import annotations

import threading
import time

from .etcdclient import Client


class Load:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"/registry/load/{i % 50}".encode()
            try:
                self.client.put(key, str(i).encode())
                assert self.client.range(key) == [(key, str(i).encode())]
                self.ok += 1
            except Exception as exc:  # every failure is recorded and asserted on by the test
                self.failures.append(repr(exc)[:300])
            i += 1

    def wait_ops(self, n: int, timeout: float = 60) -> None:
        """Wait until ``n`` more operations succeeded (fails fast once one failed)."""
        target, deadline = self.ok + n, time.monotonic() + timeout
        while self.ok < target and time.monotonic() < deadline and not self.failures:
            time.sleep(0.01)
        assert self.ok >= target, f"only {self.ok} ops; failures {self.failures[:3]}"

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.close()
