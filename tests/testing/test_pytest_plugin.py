"""The pytest plugin, registered through the ``pytest11`` entry point of the installed package:
the ``ecopy_flow`` fixture is a factory of flow-test support objects."""

from dataclasses import dataclass

from ecopy import command_handler
from ecopy.testing import FlowTestSupport


@dataclass
class Count:
    by: int


class Counter:
    def __init__(self) -> None:
        self.total = 0

    @command_handler
    def count(self, command: Count) -> int:
        self.total += command.by
        return self.total


def test_the_plugin_is_loaded_from_the_installed_package(request):
    plugin = request.config.pluginmanager.get_plugin("ecopy")

    assert plugin is not None
    assert plugin.__name__ == "ecopy.testing.plugin"
    distributions = [
        dist.project_name for _, dist in request.config.pluginmanager.list_plugin_distinfo()
    ]
    assert "ecopy-messaging" in distributions


def test_ecopy_flow_builds_a_flow_for_the_given_classes(ecopy_flow):
    flow = ecopy_flow(classes=[Counter])

    assert isinstance(flow, FlowTestSupport)
    assert flow.command_bus.send(Count(2)) == 2
    assert flow.get_recorded_commands() == [Count(2)]


def test_each_call_of_the_factory_is_an_independent_application(ecopy_flow):
    first, second = Counter(), Counter()
    flow_a = ecopy_flow(classes=[Counter], services=[first])
    flow_b = ecopy_flow(classes=[Counter], services=[second])

    flow_a.send_command(Count(1)).send_command(Count(1))
    flow_b.send_command(Count(5))

    assert (first.total, second.total) == (2, 5)
    assert flow_b.get_recorded_commands() == [Count(5)]
