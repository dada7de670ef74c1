"""Modules (DESIGN §2): an adapter plugs into bootstrap through an extension object with
``register(context)``; the core never imports it."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

import ecopy
from ecopy import (
    ConfigurationError,
    InMemoryDeadLetterStore,
    ServiceConfiguration,
    TransactionManager,
    command_handler,
    without_transaction,
)
from ecopy.config.modules import ModuleContext
from ecopy.messaging.endpoint import Endpoint


class Tenant:
    """A value computed per call, injected by annotation."""

    def __init__(self, name: str) -> None:
        self.name = name


class RecordingTransactions(TransactionManager):
    def __init__(self) -> None:
        self.log: list[str] = []

    @contextmanager
    def transaction(self):
        self.log.append("begin")
        try:
            yield
        except BaseException:
            self.log.append("rollback")
            raise
        self.log.append("commit")


@dataclass(frozen=True)
class Greet:
    name: str


@dataclass(frozen=True)
class Shout:
    name: str


class Greeter:
    @command_handler
    def greet(self, command: Greet, tenant: Tenant) -> str:
        if command.name == "nobody":
            raise ValueError("nobody to greet")
        return f"hello {command.name} from {tenant.name}"

    @without_transaction
    @command_handler
    def shout(self, command: Shout) -> str:
        return command.name.upper()


@dataclass(frozen=True)
class TenancyModule:
    transactions: RecordingTransactions = field(default_factory=RecordingTransactions)
    dead_letters: InMemoryDeadLetterStore = field(default_factory=InMemoryDeadLetterStore)

    def register(self, context: ModuleContext) -> None:
        tenants = iter(["acme", "globex"])
        context.provide(Tenant, lambda: Tenant(next(tenants)))
        context.use_transactions(self.transactions)
        context.use_dead_letter_store(self.dead_letters)


def test_a_module_provides_values_by_annotation_at_each_call():
    app = ecopy.bootstrap(
        classes=[Greeter], config=ServiceConfiguration(extensions=[TenancyModule()])
    )

    assert app.command_bus.send(Greet("ada")) == "hello ada from acme"
    assert app.command_bus.send(Greet("bob")) == "hello bob from globex"


def test_a_modules_transactions_wrap_commands_and_see_their_failures():
    module = TenancyModule()
    app = ecopy.bootstrap(classes=[Greeter], config=ServiceConfiguration(extensions=[module]))

    app.command_bus.send(Greet("ada"))
    with pytest.raises(ValueError):
        app.command_bus.send(Greet("nobody"))

    assert module.transactions.log == ["begin", "commit", "begin", "rollback"]


def test_a_handler_that_opted_out_runs_without_a_transaction():
    module = TenancyModule()
    app = ecopy.bootstrap(classes=[Greeter], config=ServiceConfiguration(extensions=[module]))

    assert app.command_bus.send(Shout("ada")) == "ADA"
    assert module.transactions.log == []


def test_a_modules_store_replaces_the_in_memory_default():
    module = TenancyModule()
    app = ecopy.bootstrap(classes=[Greeter], config=ServiceConfiguration(extensions=[module]))

    assert app.dead_letter.store is module.dead_letters


def test_a_store_given_as_a_service_wins_over_the_modules():
    mine = InMemoryDeadLetterStore()
    app = ecopy.bootstrap(
        classes=[Greeter],
        services=[Greeter(), mine],
        config=ServiceConfiguration(extensions=[TenancyModule()]),
    )

    assert app.dead_letter.store is mine


def test_module_problems_are_reported_with_the_others():
    @dataclass(frozen=True)
    class Broken:
        def register(self, context: ModuleContext) -> None:
            context.problems.append("Broken needs a licence key")

    with pytest.raises(ConfigurationError) as raised:
        ecopy.bootstrap(config=ServiceConfiguration(extensions=[Broken(), object()]))

    assert "Broken needs a licence key" in str(raised.value)
    assert "unknown extension object" in str(raised.value)


# -- the hooks every capability uses (issue 10 §1) ---------------------------------------------


class Ticker:
    """A consumer a module contributes: counts its runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs = 0

    def run(self, limits) -> int:  # type: ignore[no-untyped-def]
        self.runs += 1
        return 0

    def stop(self) -> None:
        pass


@dataclass
class HookModule:
    seen: dict[str, object] = field(default_factory=dict)
    ticker: Ticker = field(default_factory=lambda: Ticker("ticks"))

    def register(self, context: ModuleContext) -> None:
        context.on_ready(lambda: self.seen.setdefault("dead_letters", context.dead_letter_store))

        def shout(plan) -> None:  # type: ignore[no-untyped-def]
            if plan.info.endpoint_id == "Greeter.greet":
                core = plan.core
                plan.core = lambda message: str(core(message)).upper()

        def refuse_shout(plan):  # type: ignore[no-untyped-def]
            if plan.info.endpoint_id == "Greeter.shout":
                return Endpoint(plan.info, lambda message: "stage took it", None)
            return None

        context.decorate_endpoints(shout)
        context.add_endpoint_stage(refuse_shout)
        context.add_consumers(lambda: {self.ticker.name: self.ticker})
        context.add_check(lambda: [f"hook check saw {len(context.endpoints)} endpoints"])


def build_with(*extensions: object):  # type: ignore[no-untyped-def]
    return ecopy.bootstrap(
        classes=[Greeter],
        config=ServiceConfiguration(extensions=[TenancyModule(), *extensions]),
    )


def test_hooks_decorate_endpoints_build_them_add_consumers_and_report_checks():
    module = HookModule()

    with pytest.raises(ConfigurationError, match="hook check saw 2 endpoints"):
        build_with(module)

    assert isinstance(module.seen["dead_letters"], InMemoryDeadLetterStore)  # the module's


@dataclass
class QuietHookModule(HookModule):
    def register(self, context: ModuleContext) -> None:
        super().register(context)
        context.checks.clear()


def test_a_decorated_core_and_a_stage_built_endpoint_are_what_the_buses_call():
    module = QuietHookModule()
    app = build_with(module)

    assert app.command_bus.send(Greet("ann")) == "HELLO ANN FROM ACME"
    assert app.command_bus.send(Shout("bob")) == "stage took it"
    app.run("ticks")
    assert module.ticker.runs == 1
    assert [c.name for c in app.list_consumers()] == ["ticks"]


@dataclass(frozen=True)
class NotUnderstood:
    pass


def test_an_extension_no_module_takes_is_a_problem():
    with pytest.raises(ConfigurationError, match="no ecopy module handles NotUnderstood"):
        build_with(NotUnderstood())


class Ledger:
    """A port some capability defines; adapters provide it."""


class SqlLedger(Ledger):
    pass


@dataclass
class LedgerUser:
    """The capability that defines the port: asks for it once every module registered."""

    found: list[object] = field(default_factory=list)

    def register(self, context: ModuleContext) -> None:
        context.on_ready(lambda: self.found.append(context.port(Ledger)))


@dataclass(frozen=True)
class LedgerAdapter:
    ledger: Ledger = field(default_factory=SqlLedger)

    def register(self, context: ModuleContext) -> None:
        context.use_port(Ledger, self.ledger)


def test_a_port_is_what_a_module_provides_unless_a_service_was_given():
    user, adapter = LedgerUser(), LedgerAdapter()
    ecopy.bootstrap(config=ServiceConfiguration(extensions=[user, adapter]))
    mine = Ledger()
    ecopy.bootstrap(services=[mine], config=ServiceConfiguration(extensions=[user, adapter]))
    ecopy.bootstrap(config=ServiceConfiguration(extensions=[user]))

    assert user.found == [adapter.ledger, mine, None]
