"""The certificate settings of one EtcdStorage, from its spec (defaults: spec.py) and annotations."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.spec import with_defaults
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import parse_go_duration

MIN_VALIDITY = datetime.timedelta(minutes=10)
# A CA is renewed at two thirds of its life and every renewal rolls the proxy (the CRD holds this too).
MIN_CA_VALIDITY = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Settings:
    ca_validity: datetime.timedelta
    serving_validity: datetime.timedelta
    client_validity: datetime.timedelta
    key_type: str = "ecdsa"
    # Least time between publishing a next CA and signing with it. None: a sixth of
    # the CA's lifetime (half of the last third).
    overlap: datetime.timedelta | None = None
    rotate_token: str = ""
    rotate_ca_token: str = ""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], annotations: dict[str, str],
                  overlap: datetime.timedelta | None = None) -> Settings:
        spec = with_defaults(spec)

        def validity(field_name: str) -> datetime.timedelta:
            raw = spec[field_name]
            try:
                value = parse_go_duration(str(raw))
            except ValueError as exc:
                raise ValueError(f"spec.{field_name}: {exc}; use a Go duration such as 730h") from exc
            least, text = ((MIN_CA_VALIDITY, "24h") if field_name == "signingCertificateValidity"
                           else (MIN_VALIDITY, "10m"))
            if value < least:
                raise ValueError(f"spec.{field_name}: {raw} is shorter than {text}")
            return value

        algo = str(spec["keyAlgorithm"]).lower()
        if algo not in ("ecdsa", "rsa"):
            raise ValueError(f"spec.keyAlgorithm: {spec.get('keyAlgorithm')!r} must be ECDSA or RSA")
        return cls(
            ca_validity=validity("signingCertificateValidity"),
            serving_validity=validity("servingCertificateValidity"),
            client_validity=validity("clientCertificateValidity"),
            key_type=algo,
            overlap=overlap,
            rotate_token=annotations.get(names.ROTATE_ANNOTATION, ""),
            rotate_ca_token=annotations.get(names.ROTATE_CA_ANNOTATION, ""),
        )
