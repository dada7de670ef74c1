"""FastAPI integration: run an ecopy application inside a FastAPI app.

``install(api, create_app, headers=[...])`` does everything at once; each part can also be
used on its own:

- the lifespan — ``lifespan(create_app)``, or ``running(api, create_app)`` inside your own —
  calls the factory on startup (in a worker thread), keeps the ``MessagingSystem`` in
  ``api.state.ecopy`` and closes it on shutdown;
- the dependencies — ``Commands``, ``Queries``, ``Events`` (the awaitable buses, for
  ``async def`` endpoints), ``SyncCommands``, ``SyncQueries``, ``SyncEvents`` (for plain
  ``def`` endpoints, which FastAPI runs in a thread pool), ``Messaging`` and ``service(T)``;
- ``copy_headers(api, [...])``: chosen HTTP headers of a request are added to every message
  sent through those buses while it is handled, and propagate from there like any header;
- ``add_exception_handlers(api)``: ``AggregateNotFound`` answers 404, ``ConcurrencyError``
  409 and ``MessageConversionError`` 422, each with structured fields; every other error is
  left to FastAPI.

>>> api = FastAPI()  # doctest: +SKIP
>>> install(api, create_app, headers={"X-Tenant": "tenant"})  # doctest: +SKIP
>>> @api.post("/orders")  # doctest: +SKIP
... async def place(body: PlaceOrder, commands: Commands) -> str:
...     return await commands.send(body)
"""

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request

from ecopy.config.system import MessagingSystem
from ecopy.errors import (
    AggregateNotFound,
    ConcurrencyError,
    ConfigurationError,
    EcopyError,
    HeaderConversionError,
    MessageConversionError,
)
from ecopy.messaging.message import ID, INTERNAL_HEADER_PREFIXES, PARENT_ID, TIMESTAMP
from ecopy.modelling.buses import (
    AsyncCommandBus,
    AsyncEventBus,
    AsyncQueryBus,
    CommandBus,
    EventBus,
    QueryBus,
)

__all__ = [
    "ApplicationFactory",
    "Commands",
    "Events",
    "Messaging",
    "Queries",
    "SyncCommands",
    "SyncEvents",
    "SyncQueries",
    "add_exception_handlers",
    "async_command_bus",
    "async_event_bus",
    "async_query_bus",
    "command_bus",
    "copied_headers",
    "copy_headers",
    "event_bus",
    "install",
    "lifespan",
    "messaging_system",
    "query_bus",
    "running",
    "service",
]

T = TypeVar("T")

#: A function taking no arguments that builds the application (calls ``ecopy.bootstrap``).
ApplicationFactory = Callable[[], MessagingSystem]

# Where the running application and the header rule live on ``api.state``.
_SYSTEM = "ecopy"
_COPIED = "ecopy_copied_headers"
_INSTALLED = "ecopy_installed"
# Headers that identify or date one message: a copy from a request would break that.
_NOT_COPIABLE = frozenset({ID, PARENT_ID, TIMESTAMP})


# --- lifespan -------------------------------------------------------------------------------


@asynccontextmanager
async def running(api: FastAPI, factory: ApplicationFactory) -> AsyncIterator[MessagingSystem]:
    """Build the application with ``factory``, keep it in ``api.state.ecopy`` while the block
    runs, and close it after. For a lifespan of your own::

        @asynccontextmanager
        async def lifespan(api: FastAPI):
            async with running(api, create_app) as app:
                ...  # your own startup, with the application at hand
                yield

    The factory and ``close`` run in a worker thread: bootstrap may create tables or send
    commands, which must not block the event loop (nor warn that they do).
    """
    system = await run_in_threadpool(factory)
    if not isinstance(system, MessagingSystem):
        raise EcopyError(
            f"the application factory {_name(factory)} returned {type(system).__qualname__}, "
            f"not a MessagingSystem: return what ecopy.bootstrap(...) returns"
        )
    setattr(api.state, _SYSTEM, system)
    try:
        yield system
    finally:
        setattr(api.state, _SYSTEM, None)
        await run_in_threadpool(system.close)


def lifespan(factory: ApplicationFactory) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that runs the application built by ``factory``:
    ``FastAPI(lifespan=lifespan(create_app))``."""

    @asynccontextmanager
    async def run(api: FastAPI) -> AsyncIterator[None]:
        async with running(api, factory):
            yield

    return run


def install(
    api: FastAPI,
    factory: ApplicationFactory,
    *,
    headers: Sequence[str] | Mapping[str, str] = (),
) -> None:
    """Run the application built by ``factory`` with ``api``: around the lifespan ``api``
    already has (ecopy starts first and stops last, so your startup code can use it), with
    ``headers`` copied into messages (see ``copy_headers``) and ecopy's errors answered as
    HTTP errors (see ``add_exception_handlers``)."""
    if getattr(api.state, _INSTALLED, False):
        raise EcopyError(
            "ecopy is installed on this FastAPI app already: call install(api, factory) once"
        )
    copy_headers(api, headers)
    add_exception_handlers(api)
    inner = api.router.lifespan_context

    @asynccontextmanager
    async def with_ecopy(started: Any) -> AsyncIterator[Any]:
        async with running(api, factory), inner(started) as state:
            yield state

    api.router.lifespan_context = with_ecopy
    setattr(api.state, _INSTALLED, True)


# --- headers --------------------------------------------------------------------------------


def copy_headers(api: FastAPI, headers: Sequence[str] | Mapping[str, str]) -> None:
    """Copy these HTTP headers of each request into every message that the bus dependencies
    send while the request is handled.

    A list keeps each header's name, lowercased (``["X-Tenant"]`` gives the message header
    ``x-tenant``); a mapping renames (``{"X-Tenant": "tenant", "X-Correlation-Id":
    "correlation_id"}``). A header missing from the request is not set; headers given to
    ``send`` explicitly win. Messages that handlers send inherit them, as any header.
    """
    if isinstance(headers, str):
        raise ConfigurationError(
            [f"headers={headers!r} is one string: pass a list of header names or a mapping"]
        )
    pairs = (
        tuple(headers.items())
        if isinstance(headers, Mapping)
        else tuple((name, name.lower()) for name in headers)
    )
    problems = [
        f"HTTP header {http!r} cannot be copied into the message header {name!r}: ecopy sets "
        f"that header itself for every message; choose another name"
        for http, name in pairs
        if name in _NOT_COPIABLE or name.startswith(INTERNAL_HEADER_PREFIXES)
    ]
    if problems:
        raise ConfigurationError(problems)
    setattr(api.state, _COPIED, tuple((http.lower(), name) for http, name in pairs))


async def copied_headers(connection: HTTPConnection) -> dict[str, str]:
    """The message headers copied from this request (``copy_headers``); a header sent more
    than once gives its values joined by ``", "``, as HTTP combines them."""
    pairs: tuple[tuple[str, str], ...] = getattr(connection.app.state, _COPIED, ())
    found = {}
    for http, name in pairs:
        values = connection.headers.getlist(http)
        if values:
            found[name] = ", ".join(values)
    return found


def _stamped(copied: Mapping[str, Any], explicit: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return {**copied, **explicit} if explicit else copied


class _StampedCommandBus(CommandBus):
    """The application's command bus, adding a request's copied headers to each command."""

    __slots__ = ("_bus", "_copied")

    def __init__(self, bus: CommandBus, copied: Mapping[str, Any]) -> None:
        super().__init__()
        self._bus, self._copied = bus, copied

    def send(self, command: Any, headers: Mapping[str, Any] | None = None) -> Any:
        return self._bus.send(command, _stamped(self._copied, headers))

    def send_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> Any:
        return self._bus.send_with_routing(routing_key, payload, _stamped(self._copied, headers))


class _StampedQueryBus(QueryBus):
    """The application's query bus, adding a request's copied headers to each query."""

    __slots__ = ("_bus", "_copied")

    def __init__(self, bus: QueryBus, copied: Mapping[str, Any]) -> None:
        super().__init__()
        self._bus, self._copied = bus, copied

    def send(self, query: Any, headers: Mapping[str, Any] | None = None) -> Any:
        return self._bus.send(query, _stamped(self._copied, headers))

    def send_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> Any:
        return self._bus.send_with_routing(routing_key, payload, _stamped(self._copied, headers))


class _StampedEventBus(EventBus):
    """The application's event bus, adding a request's copied headers to each event."""

    __slots__ = ("_bus", "_copied")

    def __init__(self, bus: EventBus, copied: Mapping[str, Any]) -> None:
        super().__init__()
        self._bus, self._copied = bus, copied

    def publish(self, event: Any, headers: Mapping[str, Any] | None = None) -> None:
        self._bus.publish(event, _stamped(self._copied, headers))

    def publish_with_routing(
        self, routing_key: str, payload: Any = None, headers: Mapping[str, Any] | None = None
    ) -> None:
        self._bus.publish_with_routing(routing_key, payload, _stamped(self._copied, headers))


# --- dependencies ---------------------------------------------------------------------------
# ``async def``, so that FastAPI calls them on the event loop instead of sending each one to
# its thread pool: they only look things up.


async def messaging_system(connection: HTTPConnection) -> MessagingSystem:
    """The running application (dependency)."""
    system = getattr(connection.app.state, _SYSTEM, None)
    if not isinstance(system, MessagingSystem):
        raise EcopyError(
            "no ecopy application is running for this FastAPI app: install it with "
            "ecopy.web.fastapi.install(api, create_app) (or FastAPI(lifespan=ecopy.web.fastapi"
            ".lifespan(create_app))); in tests, enter the client (with TestClient(api) as "
            "client:), which runs the lifespan"
        )
    return system


Messaging = Annotated[MessagingSystem, Depends(messaging_system)]
_Copied = Annotated[dict[str, str], Depends(copied_headers)]


async def command_bus(system: Messaging, copied: _Copied) -> CommandBus:
    """The synchronous command bus, with the request's copied headers (dependency)."""
    return _StampedCommandBus(system.command_bus, copied) if copied else system.command_bus


async def query_bus(system: Messaging, copied: _Copied) -> QueryBus:
    """The synchronous query bus, with the request's copied headers (dependency)."""
    return _StampedQueryBus(system.query_bus, copied) if copied else system.query_bus


async def event_bus(system: Messaging, copied: _Copied) -> EventBus:
    """The synchronous event bus, with the request's copied headers (dependency)."""
    return _StampedEventBus(system.event_bus, copied) if copied else system.event_bus


async def async_command_bus(system: Messaging, copied: _Copied) -> AsyncCommandBus:
    """The awaitable command bus, with the request's copied headers (dependency)."""
    if not copied:
        return system.async_command_bus
    return AsyncCommandBus(_StampedCommandBus(system.command_bus, copied))


async def async_query_bus(system: Messaging, copied: _Copied) -> AsyncQueryBus:
    """The awaitable query bus, with the request's copied headers (dependency)."""
    if not copied:
        return system.async_query_bus
    return AsyncQueryBus(_StampedQueryBus(system.query_bus, copied))


async def async_event_bus(system: Messaging, copied: _Copied) -> AsyncEventBus:
    """The awaitable event bus, with the request's copied headers (dependency)."""
    if not copied:
        return system.async_event_bus
    return AsyncEventBus(_StampedEventBus(system.event_bus, copied))


Commands = Annotated[AsyncCommandBus, Depends(async_command_bus)]
Queries = Annotated[AsyncQueryBus, Depends(async_query_bus)]
Events = Annotated[AsyncEventBus, Depends(async_event_bus)]
SyncCommands = Annotated[CommandBus, Depends(command_bus)]
SyncQueries = Annotated[QueryBus, Depends(query_bus)]
SyncEvents = Annotated[EventBus, Depends(event_bus)]


def service(kind: type[T]) -> Any:
    """A dependency on the application's service of type ``kind``:
    ``database: Annotated[Database, service(Database)]``. A missing service is an
    ``EcopyError`` that says how to provide it."""

    async def provide(system: Messaging) -> Any:
        return system.require_service(kind)

    return Depends(provide)


# --- errors ---------------------------------------------------------------------------------


def add_exception_handlers(api: FastAPI) -> None:
    """Answer ``AggregateNotFound`` with 404, ``ConcurrencyError`` with 409 and
    ``MessageConversionError`` with 422; the body says which aggregate, which versions or
    which fields. Other errors are left to FastAPI (and your own handlers)."""
    for error in (AggregateNotFound, ConcurrencyError, MessageConversionError):
        api.add_exception_handler(error, _error_response)


async def _error_response(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, AggregateNotFound):
        return JSONResponse(status_code=404, content=_not_found(error))
    if isinstance(error, ConcurrencyError):
        return JSONResponse(status_code=409, content=_conflict(error))
    if isinstance(error, MessageConversionError):
        return JSONResponse(status_code=422, content={"detail": _field_errors(error)})
    raise error  # registered for the three kinds above only


def _not_found(error: AggregateNotFound) -> dict[str, Any]:
    # The exception's own text names the handler and advises the developer: not for clients.
    return {
        "detail": f"{error.aggregate} {error.identifier!r} was not found",
        "aggregate": error.aggregate,
        "identifier": jsonable_encoder(error.identifier),
    }


def _conflict(error: ConcurrencyError) -> dict[str, Any]:
    what = f"{error.aggregate} {error.identifier!r}" if error.aggregate else "the resource"
    if error.expected_version == 0:
        detail = f"{what} exists already"
    elif error.expected_version is not None and error.actual_version is not None:
        detail = (
            f"{what} is at version {error.actual_version}, but the change was based on "
            f"version {error.expected_version}; reload it and try again"
        )
    else:
        detail = f"{what} was changed concurrently; reload it and try again"
    return {
        "detail": detail,
        "aggregate": error.aggregate,
        "identifier": jsonable_encoder(error.identifier),
        "expected_version": error.expected_version,
        "actual_version": error.actual_version,
    }


def _field_errors(error: MessageConversionError) -> list[dict[str, Any]]:
    """Errors in FastAPI's own shape (``loc``, ``msg``, ``type``), located in the payload or
    the header that failed, with pydantic's field locations when pydantic said which."""
    where: list[str | int] = (
        ["header", error.header] if isinstance(error, HeaderConversionError) else ["payload"]
    )
    validation = _validation_error_behind(error)
    if validation is None:
        return [{"type": "conversion_error", "loc": where, "msg": p} for p in error.problems]
    return [
        {"type": detail["type"], "loc": [*where, *detail["loc"]], "msg": detail["msg"]}
        for detail in validation.errors(include_url=False)
    ]


def _validation_error_behind(error: BaseException) -> ValidationError | None:
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, ValidationError):
            return cause
        cause = cause.__cause__
    return None


def _name(factory: Callable[..., Any]) -> str:
    """``module.qualname`` of a function or class, so that the message says where it is."""
    qualname = getattr(factory, "__qualname__", None)
    if qualname is None:
        return repr(factory)
    module = getattr(factory, "__module__", None)
    return f"{module}.{qualname}" if module else qualname
