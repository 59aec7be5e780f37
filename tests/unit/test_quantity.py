"""Our quantity parser gives the kubernetes client's answers (module_utils/quantity.py says why it exists)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils.quantity import parse_quantity
from kubernetes.utils import parse_quantity as kubernetes_parse_quantity

SAME = ["0", "1", "512Mi", "1.5Gi", "8Ki", "1Ei", "100m", "0.5", ".5", "5.", "1k", "1M", "2G", "3T", "4P", "5E",
        "10n", "7u", "1e3", "1E3", "2e-2", "+1Ki", "-3m", "123456789", "0.1Mi"]


@pytest.mark.parametrize("text", SAME)
def test_as_the_kubernetes_client_reads_it(text: str):
    assert parse_quantity(text) == kubernetes_parse_quantity(text)


@pytest.mark.parametrize("number", [0, 7, 0.5, Decimal("1.25")])
def test_numbers_are_taken_as_they_are(number):
    assert parse_quantity(number) == Decimal(number)


@pytest.mark.parametrize("text", ["", "Mi", "1Mb", "1KiB", "1 Mi", "1ki", "1K", "0x10", "e3", "1e", True, None, [1]])
def test_what_is_not_a_quantity_is_refused(text):
    with pytest.raises(ValueError):
        parse_quantity(text)
