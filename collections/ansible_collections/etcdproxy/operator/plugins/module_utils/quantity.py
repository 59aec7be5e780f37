"""Kubernetes resource quantities (``512Mi``, ``500m``, ``1.5G``, ``1e3``) as exact numbers.

The grammar of Kubernetes' resource.Quantity: a signed decimal, then a binary suffix (Ki .. Ei), a decimal
suffix (n, u, m, k, M .. E) or a decimal exponent (e3, E-2). Here rather than kubernetes.utils.parse_quantity
so a reconcile does not import the kubernetes client for it (module_utils/kube.py says why);
tests/unit/test_quantity.py holds the two to the same answers.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?\d+))?")


def parse_quantity(value: Any) -> Decimal:
    """The quantity's value; ValueError if ``value`` is not one. Numbers (not booleans) are taken as they are."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return Decimal(value)
    match = QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix, exponent = match.groups()
    if suffix in BINARY:
        return Decimal(number) * 1024 ** BINARY[suffix]
    return Decimal(number).scaleb(DECIMAL[suffix] if suffix else int(exponent or 0))
