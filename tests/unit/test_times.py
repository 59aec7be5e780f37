"""Go durations and RFC 3339 timestamps: one parser, one format, for every caller."""

from __future__ import annotations

import datetime

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import (
    duration_seconds,
    parse_go_duration,
    parse_rfc3339,
    rfc3339,
)


@pytest.mark.parametrize(("text", "seconds"), [("730h", 730 * 3600), ("1h30m", 5400), ("90s", 90),
                                               ("1.5h", 5400), ("10m", 600), ("500ms", 0.5)])
def test_parse_go_duration(text, seconds):
    assert parse_go_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "10", "h", "1d", "ten minutes"])
def test_parse_go_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_the_retry_period_takes_any_go_duration():
    # ETCDPROXY_RETRY_PERIOD=1m30s used to be refused while ETCDPROXY_CA_OVERLAP=1m30s worked.
    assert duration_seconds("1m30s", "retry_period") == 90
    assert duration_seconds("1500ms", "retry_period") == 2
    with pytest.raises(ValueError, match="retry_period '30' is not a Go duration"):
        duration_seconds("30", "retry_period")


def test_timestamps_are_utc_seconds_and_read_back():
    t = datetime.datetime(2026, 11, 28, 7, 8, 9, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert rfc3339(t) == "2026-11-28T05:08:09Z"
    assert parse_rfc3339("2026-11-28T05:08:09Z") == t.replace(microsecond=0)
