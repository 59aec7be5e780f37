"""Command line: ``etcdproxy-guard --listen ... --backend ... --cert-file ... --key-file ... --trusted-ca-file ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .server import Config, run


def parse(argv: list[str]) -> Config:
    p = argparse.ArgumentParser(prog="etcdproxy-guard", description=__doc__)
    p.add_argument("--listen", required=True, help="host:port for tenants (TLS, client cert required)")
    p.add_argument("--backend", required=True, help="host:port of the etcd grpc-proxy (plaintext, pod-local)")
    p.add_argument("--cert-file", required=True, help="serving certificate (PEM); re-read on change")
    p.add_argument("--key-file", required=True, help="serving private key (PEM); re-read on change")
    p.add_argument("--trusted-ca-file", required=True, help="CA bundle tenant client certs must chain to")
    p.add_argument("--health-listen", default="", help="host:port for HTTP /livez and /readyz")
    p.add_argument("--report-version", default="3.5.0",
                   help="etcd version answered to Maintenance/Status (below 3.5.13: no watch progress requests)")
    p.add_argument("--max-request-bytes", type=int, default=4 * 1024 * 1024)
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Config(listen=a.listen, backend=a.backend, cert_file=a.cert_file, key_file=a.key_file,
                  client_ca_file=a.trusted_ca_file, health_listen=a.health_listen,
                  report_version=a.report_version, max_request_bytes=a.max_request_bytes)


async def _main(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(config, stop)


def main(argv: list[str] | None = None) -> int:
    config = parse(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(_main(config))
    except (OSError, ValueError) as exc:
        logging.getLogger("etcdproxy_guard").error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
