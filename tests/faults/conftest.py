"""The fault suite (marker ``faults``): consumers under SIGKILL storms, outages made with a TCP
proxy the tests own, and fuzzed poison rows, on SQLite, PostgreSQL and MariaDB. Sized for CI;
``ECOPY_FAULT_SCALE=N`` runs N times as many messages (docs/reliability.md)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in item.nodeid:
            item.add_marker(pytest.mark.faults)
