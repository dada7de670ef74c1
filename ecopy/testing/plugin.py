"""pytest plugin (registered through the ``pytest11`` entry point).

The ``ecopy_flow`` fixture is a factory: call it like ``bootstrap_flow_testing``::

    def test_placing(ecopy_flow):
        flow = ecopy_flow(classes=[OrderService])
        assert flow.send_command(PlaceOrder("o-1")).get_recorded_events() == [...]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ecopy.testing.flow import FlowTestSupport, bootstrap_flow_testing


@pytest.fixture
def ecopy_flow() -> Callable[..., FlowTestSupport]:
    """A factory for flow-test support objects, one independent system per call."""

    def factory(**options: Any) -> FlowTestSupport:
        return bootstrap_flow_testing(**options)

    return factory
