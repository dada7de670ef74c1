"""``async def`` handlers (DESIGN §1.7): accepted wherever a handler is and awaited; the
awaitable bus facades work inside ``asyncio.run``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

import pytest

import ecopy
from ecopy import (
    AsyncEventBus,
    EcopyError,
    Identifier,
    QueueChannel,
    ServiceConfiguration,
    aggregate,
    asynchronous,
    command_handler,
    event_handler,
    query_handler,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


@dataclass(frozen=True)
class GetOrderStatus:
    order_id: str


@dataclass(frozen=True)
class ArchiveOrder:
    order_id: str


class AsyncShop:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.loops: list[asyncio.AbstractEventLoop] = []

    @command_handler
    async def place(self, command: PlaceOrder, events: AsyncEventBus) -> str:
        await asyncio.sleep(0)
        self.log.append(f"placed {command.order_id}")
        await events.publish(OrderPlaced(command.order_id))
        return f"order {command.order_id}"

    @event_handler
    async def on_placed(self, event: OrderPlaced) -> None:
        await asyncio.sleep(0)
        self.log.append(f"noted {event.order_id}")

    @asynchronous("archive")
    @event_handler(endpoint_id="archive_order")
    async def archive(self, event: OrderPlaced) -> None:
        await asyncio.sleep(0)
        self.loops.append(asyncio.get_running_loop())
        self.log.append(f"archived {event.order_id}")

    @query_handler
    async def status(self, query: GetOrderStatus) -> str:
        await asyncio.sleep(0)
        return f"{query.order_id} is placed"


def shop_app(shop: AsyncShop) -> ecopy.MessagingSystem:
    return ecopy.bootstrap(
        classes=[AsyncShop],
        services=[shop],
        config=ServiceConfiguration(extensions=[QueueChannel("archive")]),
    )


def test_async_command_event_and_query_handlers_are_awaited_by_the_synchronous_buses():
    shop = AsyncShop()
    app = shop_app(shop)

    assert app.command_bus.send(PlaceOrder("o-1")) == "order o-1"
    assert app.query_bus.send(GetOrderStatus("o-1")) == "o-1 is placed"

    assert shop.log == ["placed o-1", "noted o-1"]


def test_an_async_asynchronous_handler_is_awaited_by_its_consumer_on_one_loop():
    shop = AsyncShop()
    app = shop_app(shop)
    app.command_bus.send(PlaceOrder("o-1"))
    app.command_bus.send(PlaceOrder("o-2"))

    assert app.run("archive", finish_when_no_messages=True) == 2

    assert [entry for entry in shop.log if entry.startswith("archived")] == [
        "archived o-1",
        "archived o-2",
    ]
    assert shop.loops[0] is shop.loops[1]


def test_async_handlers_work_in_flow_tests_inline_and_queued():
    inline_shop, queued_shop = AsyncShop(), AsyncShop()
    inline = bootstrap_flow_testing(classes=[AsyncShop], services=[inline_shop])
    queued = bootstrap_flow_testing(
        classes=[AsyncShop],
        services=[queued_shop],
        enable_asynchronous_processing=[QueueChannel("archive")],
    )

    inline.send_command(PlaceOrder("o-1"))
    queued.send_command(PlaceOrder("o-1"))
    assert "archived o-1" in inline_shop.log
    assert "archived o-1" not in queued_shop.log

    queued.run("archive")
    assert "archived o-1" in queued_shop.log


def test_the_async_buses_work_inside_asyncio_run():
    shop = AsyncShop()
    app = shop_app(shop)

    async def main() -> tuple[str, str]:
        placed = await app.async_command_bus.send(PlaceOrder("o-1"))
        await app.async_event_bus.publish(OrderPlaced("o-2"))
        status = await app.async_query_bus.send(GetOrderStatus("o-1"))
        return placed, status

    assert asyncio.run(main()) == ("order o-1", "o-1 is placed")
    assert shop.log == ["placed o-1", "noted o-1", "noted o-2"]
    assert app.run("archive", finish_when_no_messages=True) == 2


def test_the_async_command_bus_reaches_synchronous_handlers_too():
    placed: list[str] = []

    class Orders:
        @command_handler
        def place(self, command: PlaceOrder) -> str:
            placed.append(command.order_id)
            return command.order_id

        @command_handler("order.cancel")
        def cancel(self, order_id: str) -> str:
            return f"cancelled {order_id}"

    app = ecopy.bootstrap(classes=[Orders], services=[Orders()])

    async def main() -> list[str]:
        return list(
            await asyncio.gather(
                app.async_command_bus.send(PlaceOrder("o-1")),
                app.async_command_bus.send(PlaceOrder("o-2")),
                app.async_command_bus.send_with_routing("order.cancel", "o-3"),
            )
        )

    assert asyncio.run(main()) == ["o-1", "o-2", "cancelled o-3"]
    assert sorted(placed) == ["o-1", "o-2"]


def test_a_synchronous_bus_used_inside_a_running_loop_points_to_the_async_facade():
    app = shop_app(AsyncShop())

    async def main() -> None:
        app.command_bus.send(PlaceOrder("o-1"))

    # It warns that the call blocks the loop, then the async handler refuses to run there.
    with (
        pytest.warns(ecopy.BlockingCallInEventLoop),
        pytest.raises(EcopyError, match="AsyncCommandBus"),
    ):
        asyncio.run(main())


@aggregate
@dataclass
class Order:
    order_id: Annotated[str, Identifier]
    archived: bool = False

    @command_handler
    @classmethod
    def place(cls, command: PlaceOrder) -> Order:
        return cls(command.order_id)

    @command_handler
    async def archive(self, command: ArchiveOrder) -> None:
        await asyncio.sleep(0)
        self.archived = True


def test_an_async_aggregate_action_is_awaited():
    flow = bootstrap_flow_testing(classes=[Order])

    flow.send_command(PlaceOrder("o-1")).send_command(ArchiveOrder("o-1"))

    assert flow.get_aggregate(Order, "o-1").archived is True
