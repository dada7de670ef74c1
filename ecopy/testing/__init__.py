"""Flow testing: run the real application in memory and observe its messages."""

from ecopy.testing.flow import FlowTestSupport, bootstrap_flow_testing

__all__ = ["FlowTestSupport", "bootstrap_flow_testing"]
