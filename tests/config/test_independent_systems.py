"""Two applications in one process share nothing: no global state (STYLE, "No global state")."""

from dataclasses import dataclass

from ecopy import EventBus, command_handler, event_handler
from ecopy.testing import bootstrap_flow_testing


@dataclass
class Deposit:
    amount: int


@dataclass
class Deposited:
    amount: int


class Account:
    def __init__(self) -> None:
        self.balance = 0

    @command_handler
    def deposit(self, command: Deposit, events: EventBus) -> int:
        self.balance += command.amount
        events.publish(Deposited(command.amount))
        return self.balance


class Statement:
    def __init__(self) -> None:
        self.lines: list[int] = []

    @event_handler
    def on_deposited(self, event: Deposited) -> None:
        self.lines.append(event.amount)


def test_same_classes_different_instances_no_cross_talk():
    account_a, statement_a = Account(), Statement()
    account_b, statement_b = Account(), Statement()
    flow_a = bootstrap_flow_testing(classes=[Account, Statement], services=[account_a, statement_a])
    flow_b = bootstrap_flow_testing(classes=[Account, Statement], services=[account_b, statement_b])

    assert flow_a.command_bus.send(Deposit(10)) == 10
    assert flow_b.command_bus.send(Deposit(1)) == 1
    assert flow_a.command_bus.send(Deposit(5)) == 15

    assert (account_a.balance, account_b.balance) == (15, 1)
    assert statement_a.lines == [10, 5]
    assert statement_b.lines == [1]
    assert flow_a.get_recorded_events() == [Deposited(10), Deposited(5)]
    assert flow_b.get_recorded_events() == [Deposited(1)]
    assert flow_a.get_recorded_commands() == [Deposit(10), Deposit(5)]
    assert flow_b.get_recorded_commands() == [Deposit(1)]


def test_instances_built_by_bootstrap_are_per_system():
    flow_a = bootstrap_flow_testing(classes=[Account])
    flow_b = bootstrap_flow_testing(classes=[Account])

    flow_a.send_command(Deposit(10)).send_command(Deposit(10))

    assert flow_b.command_bus.send(Deposit(1)) == 1


def test_one_system_can_be_used_from_a_handler_of_another_without_mixing_recordings():
    bank = bootstrap_flow_testing(classes=[Account])

    class Payroll:
        @command_handler("pay")
        def pay(self) -> int:
            return bank.command_bus.send(Deposit(100))

    payroll = bootstrap_flow_testing(classes=[Payroll])

    assert payroll.command_bus.send_with_routing("pay") == 100
    assert bank.get_recorded_commands() == [Deposit(100)]
    assert payroll.get_recorded_events() == []
    assert bank.get_recorded_events() == [Deposited(100)]


def test_propagation_follows_the_call_from_one_system_into_another():
    # Like trace context, propagation follows the call: a handler of one system that sends
    # through another system's bus passes its user headers and correlation on. Nothing else
    # is shared: routing, handlers and recorded messages stay apart.
    bank = bootstrap_flow_testing(classes=[Account])

    class Payroll:
        @command_handler("pay")
        def pay(self) -> int:
            return bank.command_bus.send(Deposit(100))

    payroll = bootstrap_flow_testing(classes=[Payroll])
    payroll.send_command_with_routing("pay", headers={"tenant": "acme"})

    [pay] = payroll.get_recorded_command_headers()
    [deposit] = bank.get_recorded_command_headers()
    assert deposit["tenant"] == "acme"
    assert deposit["correlation_id"] == pay["correlation_id"]
    assert deposit["parent_id"] == pay["id"]
    assert payroll.get_recorded_commands() == [None]


def test_close_releases_what_the_modules_hold_once_and_the_system_is_a_context_manager():
    import ecopy
    from ecopy import ServiceConfiguration
    from ecopy.config.modules import ModuleContext

    closed: list[str] = []

    class Pool:
        def register(self, context: ModuleContext) -> None:
            context.on_close(lambda: closed.append("engine"))
            context.on_close(lambda: closed.append("threads"))

    with ecopy.bootstrap(config=ServiceConfiguration(extensions=[Pool()])) as app:
        assert closed == []
    assert closed == ["threads", "engine"]  # in the reverse order of registration

    app.close()
    assert closed == ["threads", "engine"]


def test_a_failed_bootstrap_closes_what_the_modules_opened():
    import pytest

    import ecopy
    from ecopy import ConfigurationError, ServiceConfiguration
    from ecopy.config.modules import ModuleContext

    closed: list[str] = []

    class Pool:
        def register(self, context: ModuleContext) -> None:
            context.on_close(lambda: closed.append("engine"))
            context.problems.append("Pool: no server")

    with pytest.raises(ConfigurationError):
        ecopy.bootstrap(config=ServiceConfiguration(extensions=[Pool()]))
    assert closed == ["engine"]


def test_require_service_returns_the_service_or_says_how_to_get_one():
    import pytest

    import ecopy
    from ecopy import EcopyError, SystemClock

    clock = SystemClock()
    app = ecopy.bootstrap(services=[clock])

    assert app.require_service(SystemClock) is clock
    with pytest.raises(EcopyError, match="the application has no service of type Decimal"):
        from decimal import Decimal

        app.require_service(Decimal)
