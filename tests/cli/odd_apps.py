"""Attributes that ``--app`` may point at by mistake, and an application with nothing in it."""

from __future__ import annotations

from ecopy import MessagingSystem, bootstrap

empty_system = bootstrap()

not_a_system = {"service_name": "shop"}


def factory_needing_arguments(service_name: str) -> MessagingSystem:
    return bootstrap()


def failing_factory() -> MessagingSystem:
    raise RuntimeError("the database is down")


def factory_returning_something_else() -> str:
    return "shop"
