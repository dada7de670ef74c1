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
