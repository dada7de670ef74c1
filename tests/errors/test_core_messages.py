"""Every error message of the core (modelling, configuration, messaging) says what went wrong,
for which handler, channel or message, and the fix that is right for the application
(issue 10 §3). Each test asserts the whole text, so a change to one is a decision, not an
accident."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from ecopy import (
    AggregateDefinitionError,
    CommandBus,
    ConfigurationError,
    ControlledClock,
    EventBus,
    Identifier,
    IdentifierNotFound,
    Message,
    MethodInvocation,
    QueryBus,
    QueueChannel,
    Reference,
    RetryTemplate,
    aggregate,
    asynchronous,
    before,
    bootstrap,
    command_handler,
    deduplicated,
    delayed,
    event_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
    internal_handler,
    named_event,
    query_handler,
    saga,
    time_to_live,
)
from ecopy.messaging.channel import DirectChannel, DispatchError
from ecopy.messaging.deduplication import DeduplicationKeyError
from ecopy.testing import bootstrap_flow_testing

HERE = __name__


def problems_of(**arguments: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigurationError) as raised:
        bootstrap(**arguments)
    return raised.value.problems


@dataclass(frozen=True)
class PlaceOrder:
    order_id: str


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


@dataclass(frozen=True)
class CountOrders:
    pass


# -- aggregates the application does not know -------------------------------------------------


@aggregate
@dataclass
class Basket:
    basket_id: Annotated[str, Identifier]

    @command_handler
    def add(self, command: PlaceOrder) -> None: ...


class Undecorated:
    pass


def test_an_aggregate_not_given_to_bootstrap_is_to_be_given_not_decorated_again():
    flow = bootstrap_flow_testing(classes=[])

    with pytest.raises(AggregateDefinitionError) as raised:
        flow.get_aggregate(Basket, "b-1")

    assert str(raised.value) == (
        "Basket is not part of this application; give it to bootstrap (classes= or scan=)"
    )


def test_a_class_that_is_no_aggregate_is_to_be_decorated():
    flow = bootstrap_flow_testing(classes=[])

    with pytest.raises(AggregateDefinitionError) as raised:
        flow.get_aggregate(Undecorated, "u-1")

    assert str(raised.value) == (
        "Undecorated is not an aggregate or a saga; decorate it with @aggregate, "
        "@event_sourcing_aggregate or @saga and give it to bootstrap (classes= or scan=)"
    )


# -- identifiers given by hand ------------------------------------------------------------------


@dataclass(frozen=True)
class AddLine:
    order_id: str
    line: int


@aggregate
@dataclass
class OrderLine:
    order_id: Annotated[str, Identifier]
    line: Annotated[int, Identifier]

    @classmethod
    @command_handler
    def add(cls, command: AddLine) -> OrderLine:
        return cls(command.order_id, command.line)


def test_a_composite_identifier_given_as_one_value_names_the_aggregate_and_the_dict():
    flow = bootstrap_flow_testing(classes=[OrderLine])

    with pytest.raises(IdentifierNotFound) as raised:
        flow.get_aggregate(OrderLine, "o-1")

    assert str(raised.value) == (
        "the identifier of OrderLine is composite: give a dict with order_id, line "
        "({'order_id': ..., 'line': ...}), not 'o-1'"
    )


def test_a_composite_identifier_given_in_part_is_refused_the_same_way():
    flow = bootstrap_flow_testing(classes=[OrderLine])

    with pytest.raises(IdentifierNotFound) as raised:
        flow.get_aggregate(OrderLine, {"order_id": "o-1"})

    assert str(raised.value) == (
        "the identifier of OrderLine is composite: give a dict with order_id, line "
        "({'order_id': ..., 'line': ...}), not {'order_id': 'o-1'}"
    )


def test_a_dict_without_the_single_identifier_says_which_field_it_is():
    flow = bootstrap_flow_testing(classes=[Basket])

    with pytest.raises(IdentifierNotFound) as raised:
        flow.get_aggregate(Basket, {"id": "b-1"})

    assert str(raised.value) == (
        "the identifier of Basket is basket_id: give its value, or a dict with 'basket_id', "
        "not {'id': 'b-1'}"
    )


def test_a_history_given_for_a_wrong_identifier_names_the_aggregate():
    flow = bootstrap_flow_testing(classes=[Account])

    with pytest.raises(IdentifierNotFound) as raised:
        flow.with_events_for(Account, {"id": "a-1"}, [AccountOpened("a-1")])

    assert str(raised.value) == (
        "the identifier of Account is account_id: give its value, or a dict with "
        "'account_id', not {'id': 'a-1'}"
    )


# -- factories that return something unusable --------------------------------------------------


@dataclass(frozen=True)
class OpenAccount:
    account_id: str


@dataclass(frozen=True)
class AccountOpened:
    account_id: str


@event_sourcing_aggregate
class Account:
    account_id: Annotated[str, Identifier]

    @classmethod
    @command_handler
    def open(cls, command: OpenAccount) -> list[object]:
        return [AccountOpened(command.account_id)]

    @event_sourcing_handler
    def on_opened(self, event: AccountOpened) -> None:
        pass  # forgets to set account_id


def test_an_event_sourced_factory_whose_events_do_not_set_the_identifier():
    flow = bootstrap_flow_testing(classes=[Account])

    with pytest.raises(AggregateDefinitionError) as raised:
        flow.send_command(OpenAccount("a-1"))

    assert str(raised.value) == (
        f"factory {HERE}.Account.open returned events that do not set the identifier "
        f"account_id of Account; the first event must carry it and an "
        f"@event_sourcing_handler must apply it"
    )


@dataclass(frozen=True)
class OpenCart:
    cart_id: str | None


@aggregate
@dataclass
class Cart:
    cart_id: Annotated[str | None, Identifier]

    @classmethod
    @command_handler
    def open(cls, command: OpenCart) -> Cart:
        return cls(command.cart_id)


@dataclass(frozen=True)
class OpenShelf:
    shelf_id: str


@aggregate
@dataclass
class Shelf:
    shelf_id: Annotated[str, Identifier]

    @classmethod
    @command_handler
    def open(cls, command: OpenShelf) -> str:
        return command.shelf_id  # returns the id instead of the new Shelf


def test_a_factory_that_returns_an_aggregate_without_its_identifier():
    flow = bootstrap_flow_testing(classes=[Cart])

    with pytest.raises(AggregateDefinitionError) as raised:
        flow.send_command(OpenCart(None))

    assert str(raised.value) == (
        f"factory {HERE}.Cart.open returned a Cart without its identifier cart_id; set it "
        f"in the factory"
    )


def test_a_factory_that_returns_something_else_than_the_new_aggregate():
    flow = bootstrap_flow_testing(classes=[Shelf])

    with pytest.raises(AggregateDefinitionError) as raised:
        flow.send_command(OpenShelf("s-1"))

    assert str(raised.value) == (
        f"factory {HERE}.Shelf.open must return a new Shelf, but returned str"
    )


# -- aggregate declarations ---------------------------------------------------------------------


@aggregate
class Nameless:
    @command_handler
    def place(self, command: PlaceOrder) -> None: ...


@saga
class Faceless:
    @classmethod
    @event_handler
    def start(cls, event: OrderPlaced) -> Faceless:
        return cls()


def test_an_aggregate_and_a_saga_without_identifier_are_each_called_by_their_kind():
    assert problems_of(classes=[Nameless, Faceless]) == (
        "aggregate Nameless has no identifier; mark its identifier field with "
        "Annotated[str, Identifier]",
        "saga Faceless has no identifier; mark its identifier field with "
        "Annotated[str, Identifier]",
    )


def test_a_snapshot_interval_below_one_says_how_to_store_no_snapshots():
    with pytest.raises(ConfigurationError) as raised:
        event_sourcing_aggregate(snapshot_every=0)

    assert raised.value.problems == (
        "@event_sourcing_aggregate(snapshot_every=0): snapshot_every is a number of events, "
        "at least 1; leave it out to store no snapshots",
    )


# -- buses created by hand ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bus", "send", "attribute"),
    [
        (CommandBus, lambda bus: bus.send(PlaceOrder("o-1")), "command_bus"),
        (QueryBus, lambda bus: bus.send(CountOrders()), "query_bus"),
        (EventBus, lambda bus: bus.publish(OrderPlaced("o-1")), "event_bus"),
    ],
)
def test_a_bus_created_by_hand_points_to_the_application_s_bus(bus, send, attribute, monkeypatch):
    monkeypatch.setattr("ecopy.messaging.message.new_message_id", lambda: "m-1")

    with pytest.raises(RuntimeError) as raised:
        send(bus())

    assert str(raised.value) == (
        f"this {bus.__name__} belongs to no application, so message m-1 cannot be sent: use "
        f"the one bootstrap() returns (app.{attribute}), or take {bus.__name__} as a "
        f"parameter of a handler"
    )


# -- handler decorators -------------------------------------------------------------------------


def test_a_class_given_to_a_handler_decorator_is_told_to_annotate_the_parameter():
    with pytest.raises(TypeError) as raised:
        command_handler(PlaceOrder)  # type: ignore[arg-type]

    assert str(raised.value) == (
        "@command_handler takes a routing key string, got the class PlaceOrder; to route by "
        "class, write @command_handler without arguments and annotate the first parameter "
        "with it (command: PlaceOrder)"
    )


def test_a_routing_key_that_is_not_a_string_is_shown_with_an_example():
    with pytest.raises(TypeError) as raised:
        query_handler(42)  # type: ignore[call-overload]

    assert str(raised.value) == (
        '@query_handler takes a routing key string (e.g. @query_handler("order.place")), got 42'
    )


def test_an_unknown_event_handler_option_lists_the_options_it_takes():
    with pytest.raises(TypeError) as raised:
        event_handler(drop_message_when_missing=True)

    assert str(raised.value) == (
        "@event_handler got unexpected options ['drop_message_when_missing']; it takes "
        "listen_to, endpoint_id, output_channel, identifier_mapping, "
        "identifier_metadata_mapping and drop_message_on_not_found"
    )


def test_an_internal_handler_without_a_channel_name():
    with pytest.raises(TypeError) as raised:
        internal_handler("")

    assert str(raised.value) == (
        '@internal_handler needs the name of its input channel (e.g. @internal_handler("'
        "orders.validated\")), got ''"
    )


# -- classes=, services= and constructing handler classes ---------------------------------------


class NeedsConfig:
    def __init__(self) -> None:
        raise KeyError("SMTP_HOST")

    @event_handler
    def on_placed(self, event: OrderPlaced) -> None: ...


def test_a_handler_class_whose_constructor_fails_names_the_error_and_the_instance_to_give():
    assert problems_of(classes=[NeedsConfig]) == (
        "class NeedsConfig could not be instantiated for its handlers (KeyError: "
        "'SMTP_HOST'); pass an instance in services=[NeedsConfig(...)]",
    )


class Mailer:
    @event_handler
    def on_placed(self, event: OrderPlaced) -> None: ...


def test_an_instance_given_in_classes_belongs_in_services():
    assert problems_of(classes=[Mailer()]) == (
        "classes= holds an instance of Mailer, where a class belongs; give Mailer in "
        "classes= and the instance in services=",
    )


def test_a_module_given_in_classes_is_told_to_give_classes_or_scan():
    assert problems_of(classes=[json]) == (
        f"classes= holds {json!r}, which is neither a class nor a decorated function; give "
        f"the classes (or the module path in scan=)",
    )


def test_a_package_that_cannot_be_scanned_names_the_import_error():
    assert problems_of(scan=["shop_that_does_not_exist"]) == (
        "scan='shop_that_does_not_exist': the package cannot be imported "
        "(ModuleNotFoundError: No module named 'shop_that_does_not_exist'); check the name "
        "and that it is on the Python path",
    )


# -- handler definitions ------------------------------------------------------------------------


class Orders:
    @command_handler(endpoint_id="orders")
    def place(self, command: PlaceOrder) -> None: ...


class Invoices:
    @event_handler(endpoint_id="orders")
    def on_placed(self, event: OrderPlaced) -> None: ...


def test_one_endpoint_id_on_two_handlers_names_both_with_their_module():
    assert problems_of(classes=[Orders, Invoices]) == (
        f"endpoint id 'orders' is used by two handlers, {HERE}.Orders.place and "
        f"{HERE}.Invoices.on_placed; an endpoint id names one handler, give the other one "
        f"its own endpoint_id=",
    )


def test_an_annotation_that_cannot_be_resolved_says_where_to_define_it():
    @dataclass(frozen=True)
    class LocalCommand:
        pass

    class Local:
        @command_handler
        def handle(self, command: LocalCommand) -> None: ...

    assert problems_of(classes=[Local]) == (
        "handler test_an_annotation_that_cannot_be_resolved_says_where_to_define_it.<locals>."
        "Local.handle: the annotation 'LocalCommand' of its first parameter cannot be "
        "resolved; import LocalCommand in the handler's module at run time (not only under "
        "TYPE_CHECKING) and define it at module level (with 'from __future__ import "
        "annotations', a class defined inside a function cannot be found later)",
    )


class Validation:
    @internal_handler("orders.validate")
    def validate(self, order: dict[str, object]) -> None: ...


class Audit:
    @internal_handler("orders.validate")
    def audit(self, order: dict[str, object]) -> None: ...


def test_two_internal_handlers_on_one_channel_each_need_their_own():
    assert problems_of(classes=[Validation, Audit]) == (
        f"channel 'orders.validate' has two internal handlers, {HERE}.Validation.validate "
        f"and {HERE}.Audit.audit, but it delivers each message to one handler; give each "
        f"handler its own input channel",
    )


class Notifications:
    @named_event("notifications.backup")
    @event_handler
    def on_placed(
        self, event: OrderPlaced, backup: Annotated[Mailer, Reference("backup_mailer")]
    ) -> None: ...


def test_a_reference_to_an_unregistered_service_shows_how_to_name_one():
    assert problems_of(classes=[Notifications]) == (
        f"handler {HERE}.Notifications.on_placed: parameter 'backup' refers to service "
        f"'backup_mailer', which is not registered; give it that name: "
        f"services={{'backup_mailer': ...}} (a service in a list is known by its class name "
        f"and its snake_case class name)",
    )


# -- delivery options ---------------------------------------------------------------------------


class Reminders:
    @delayed(60)
    @command_handler
    def remind(self, command: PlaceOrder) -> None: ...


class Reports:
    @time_to_live(30)
    @query_handler
    def count(self, query: CountOrders) -> int:
        return 0


def test_a_delay_on_a_synchronous_command_handler_says_to_make_it_asynchronous_or_drop_it():
    assert problems_of(classes=[Reminders]) == (
        f"handler {HERE}.Reminders.remind has @delayed but is not @asynchronous, and @delayed "
        f'applies only to messages sent to a channel; make it @asynchronous("<channel>") too, '
        f"or remove @delayed",
    )


def test_a_delivery_option_on_a_query_handler_is_never_told_to_make_the_query_asynchronous():
    assert problems_of(classes=[Reports]) == (
        f"query handler {HERE}.Reports.count has @time_to_live, but a query is answered at "
        f"once; remove @time_to_live",
    )


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda: delayed(-1), "@delayed needs seconds >= 0, a timedelta or a datetime, got -1"),
        (lambda: time_to_live(0), "@time_to_live needs seconds > 0 or a timedelta, got 0"),
    ],
)
def test_a_delivery_option_out_of_range_shows_the_value(make, text):
    with pytest.raises(TypeError) as raised:
        make()

    assert str(raised.value) == text


# -- interceptors ------------------------------------------------------------------------------


class Timing:
    @before(pointcut=Orders)
    def start(self, invocation: MethodInvocation) -> None: ...


def test_a_before_interceptor_that_takes_a_method_invocation_says_how_to_fix_it():
    assert problems_of(classes=[Orders, Timing]) == (
        "interceptor Timing.start is @before and takes a MethodInvocation, which only "
        "@around interceptors receive; make it @around (and call invocation.proceed()), or "
        "remove that parameter",
    )


class Tenants:
    @before(pointcut=Orders, change_headers=True)
    def tenant(self) -> str:
        return "acme"


def test_a_change_headers_interceptor_that_returns_no_dict_names_the_message(monkeypatch):
    monkeypatch.setattr("ecopy.messaging.message.new_message_id", lambda: "m-7")
    app = bootstrap(classes=[Orders, Tenants])

    with pytest.raises(TypeError) as raised:
        app.command_bus.send(PlaceOrder("o-1"))

    assert str(raised.value) == (
        "interceptor Tenants.tenant has change_headers=True and must return a dict of headers "
        "to add (or None), but returned str for message m-7"
    )


# -- deduplication -----------------------------------------------------------------------------


def test_a_deduplication_key_given_as_a_string_is_shown_as_a_header():
    with pytest.raises(TypeError) as raised:
        deduplicated(key="order_id")  # type: ignore[arg-type]

    assert str(raised.value) == (
        "@deduplicated(key=...) takes a function of the message, got 'order_id'; to "
        'deduplicate by a header, write @deduplicated("order_id")'
    )


def test_a_deduplication_key_that_is_no_function_and_no_name_is_not_taken_for_a_header():
    with pytest.raises(TypeError) as raised:
        deduplicated(key=42)  # type: ignore[arg-type]

    assert str(raised.value) == "@deduplicated(key=...) takes a function of the message, got 42"


def test_a_header_and_a_key_function_together():
    with pytest.raises(TypeError) as raised:
        deduplicated("order_id", key=lambda message: message.payload.order_id)

    assert str(raised.value) == (
        "@deduplicated got both the header 'order_id' and key=; give one: "
        '@deduplicated("order_id") deduplicates by that header, @deduplicated(key=...) by '
        "what the function returns"
    )


class Shipping:
    @deduplicated(key=lambda message: message.payload["order_id"])
    @command_handler("ship", endpoint_id="ship")
    def ship(self, command: dict[str, str]) -> None: ...


def test_a_failing_deduplication_key_names_the_handler_and_the_message(monkeypatch):
    monkeypatch.setattr("ecopy.messaging.message.new_message_id", lambda: "m-3")
    app = bootstrap(classes=[Shipping])

    with pytest.raises(DeduplicationKeyError) as raised:
        app.command_bus.send_with_routing("ship", {"parcel": "p-1"})

    assert str(raised.value) == (
        "the deduplication key function of ship raised KeyError: 'order_id', for message "
        "m-3; it must accept every message the handler receives (return None to handle a "
        "message without deduplicating it)"
    )


# -- retry templates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (
            lambda: RetryTemplate.exponential(-100, 0),
            "RetryTemplate: initial_delay_ms must be >= 0, got -100; multiplier must be > 0, got 0",
        ),
        (
            lambda: RetryTemplate.fixed(100, -1),
            "RetryTemplate: max_attempts must be an int >= 0 (or None: no limit), got -1",
        ),
        (
            lambda: RetryTemplate.backoff([0.5, 2]),  # type: ignore[list-item]
            "RetryTemplate.backoff needs delays in whole milliseconds >= 0 (e.g. [1000, 5000] "
            "for 1 s, then 5 s), got [0.5, 2]",
        ),
        (
            lambda: RetryTemplate.backoff([]),
            "RetryTemplate.backoff needs at least one delay, e.g. [1000, 5000]",
        ),
        (
            lambda: RetryTemplate.fixed(100, 3, non_retryable=[42]),  # type: ignore[list-item]
            "RetryTemplate non_retryable takes exception classes or their qualified names "
            "('shop.billing.CardExpired'), got 42",
        ),
        (
            lambda: RetryTemplate.fixed(100, None).delays_ms(),
            "this RetryTemplate retries without limit (max_attempts=None): ask for "
            "delays_ms(count), the delays of the first count retries",
        ),
    ],
)
def test_a_retry_template_names_what_is_wrong_with_its_value(make, text):
    with pytest.raises(ValueError) as raised:
        make()

    assert str(raised.value) == text


# -- messages and channels ---------------------------------------------------------------------


def test_a_message_cannot_be_changed_in_place():
    message = Message({"order_id": "o-1"})

    with pytest.raises(AttributeError) as raised:
        message.payload = {}  # type: ignore[misc]

    assert str(raised.value) == (
        "Message is immutable, so 'payload' cannot be set; make a changed copy with "
        "with_payload() or with_headers()"
    )


def test_a_named_event_needs_a_name():
    with pytest.raises(ConfigurationError) as raised:
        named_event("")

    assert raised.value.problems == (
        "@named_event needs a non-empty string name (e.g. \"order.placed\"), got ''",
    )


def test_a_controlled_clock_does_not_go_back():
    with pytest.raises(ValueError) as raised:
        ControlledClock().advance(-5)

    assert str(raised.value) == (
        "a clock cannot go back, but advance() was given -5; to set an earlier time, use "
        "change_time_to() on the flow (ControlledClock.change_to())"
    )


def test_a_direct_channel_without_subscriber_says_how_to_declare_one():
    # Bootstrap subscribes every direct channel it creates, so this guard is reached only by
    # a channel built by hand.
    channel = DirectChannel("orders.validate")

    with pytest.raises(DispatchError) as raised:
        channel.send(Message({}, {"id": "m-5"}))

    assert str(raised.value) == (
        "Channel 'orders.validate' has no subscriber for message m-5; declare a handler for "
        "it with @internal_handler('orders.validate')"
    )


class Jobs:
    @asynchronous("jobs")
    @command_handler("job.run", endpoint_id="run_job")
    def run(self, job: dict[str, int]) -> None: ...


def _unusable(**headers: object) -> str:
    return json.dumps(
        {
            "type": "json",
            "payload": {"number": 1},
            "headers": {"ecopy.endpoint_id": "run_job", **headers},
        }
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            _unusable(id="m-9", **{"ecopy.retry_count": "two"}),
            "message m-9 has unusable headers: header 'ecopy.retry_count' must be an integer "
            ">= 0, got 'two'",
        ),
        (
            _unusable(id=12),
            "a message has unusable headers: the id must be a non-empty string, got 12",
        ),
    ],
)
def test_a_message_with_unusable_headers_is_dead_lettered_naming_it(body, reason):
    flow = bootstrap_flow_testing(
        classes=[Jobs], enable_asynchronous_processing=[QueueChannel("jobs")]
    )
    flow.system.channel("jobs").send_serialized(body)  # type: ignore[attr-defined]

    flow.run("jobs")

    [dead] = flow.dead_letter.list()
    assert dead.exception_message == reason


def test_a_message_for_an_endpoint_this_channel_does_not_have_says_how_to_handle_it():
    flow = bootstrap_flow_testing(
        classes=[Jobs], enable_asynchronous_processing=[QueueChannel("jobs")]
    )
    body = json.dumps(
        {
            "type": "json",
            "payload": {"number": 1},
            "headers": {"id": "m-4", "ecopy.endpoint_id": "run_job_v1"},
        }
    )
    flow.system.channel("jobs").send_serialized(body)  # type: ignore[attr-defined]

    flow.run("jobs")

    [dead] = flow.dead_letter.list()
    assert dead.exception_message == (
        "message m-4 on channel 'jobs' is addressed to endpoint 'run_job_v1', which this "
        "application does not have on this channel (a handler removed, renamed or moved while "
        "its messages were queued); to handle such messages, give a handler on this channel "
        "endpoint_id='run_job_v1'"
    )


def test_a_channel_declared_twice_is_to_be_declared_once():
    from ecopy import ServiceConfiguration
    from ecopy_dbal import DbalChannel, DbalConfiguration

    problems = problems_of(
        config=ServiceConfiguration(
            extensions=[
                DbalConfiguration(url="sqlite://"),
                QueueChannel("orders"),
                DbalChannel("orders"),
            ]
        )
    )

    assert problems == (
        "channel 'orders' is declared twice among the extensions; keep one declaration of it",
    )
