"""The exception hierarchy: every error ecopy raises is an :class:`EcopyError`."""

from __future__ import annotations

from collections.abc import Iterable


class EcopyError(Exception):
    """Root of every error raised by ecopy."""


class NonRetryableError(EcopyError):
    """A failure that retrying cannot fix: the message goes straight to the dead letters.

    Raise it (or a subclass) from a handler for a message that can never succeed, such as an
    order for a product that does not exist. A consumer sends such a message to the dead-letter
    store with the reason whatever its error handling says: it is never retried, never dropped
    and never stops the consumer. Conversion failures and missing headers are of this kind.
    """


class ConfigurationError(EcopyError):
    """The application's configuration is invalid.

    Bootstrap collects every problem it finds and raises one ``ConfigurationError`` listing
    them all, so a developer fixes the configuration in one pass.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"ecopy configuration has {count} {noun}:\n{lines}")


class ConfigurationWarning(UserWarning):
    """Something in the configuration that is allowed but probably not meant: an interceptor
    whose pointcut selects nothing, an ``Identifier`` on a class that is not an aggregate."""


class NoHandlerFound(EcopyError):
    """A command or query was sent, but no handler is registered for it."""

    def __init__(self, what: str, close_matches: Iterable[str] = (), kind: str = "command") -> None:
        self.what = what
        self.kind = kind
        self.close_matches: tuple[str, ...] = tuple(close_matches)
        message = f"No handler found for {what}."
        if self.close_matches:
            message += " Did you mean: " + ", ".join(repr(m) for m in self.close_matches) + "?"
        else:
            message += (
                f" Declare a handler for it with @{kind}_handler, and give its class to "
                f"bootstrap (classes= or scan=)."
            )
        super().__init__(message)


class MessageConversionError(NonRetryableError):
    """A payload could not be converted to the type a handler expects."""

    def __init__(
        self,
        *,
        handler: str,
        expected: str,
        problems: Iterable[str],
        payload_type: str,
    ) -> None:
        self.handler = handler
        self.expected = expected
        self.problems: tuple[str, ...] = tuple(problems)
        details = "; ".join(self.problems)
        super().__init__(
            f"Cannot convert a {payload_type} payload to {expected} for handler {handler}: "
            f"{details}. Send a payload that matches {expected}."
        )


class HeaderConversionError(MessageConversionError):
    """A header's value cannot be converted to the type a handler asks for."""

    def __init__(
        self,
        *,
        handler: str,
        header: str,
        value: object,
        expected: str,
        problems: Iterable[str],
        message_id: str,
    ) -> None:
        self.handler = handler
        self.expected = expected
        self.problems = tuple(problems)
        self.header = header
        EcopyError.__init__(
            self,
            f"Header {header!r} of message {message_id} is {value!r}, which cannot be converted "
            f"to {expected} for handler {handler}: {'; '.join(self.problems)}. Send the header "
            f"as {expected}.",
        )


class MissingHeader(NonRetryableError):
    """A handler needs a header that the message does not carry."""

    def __init__(self, *, handler: str, header: str, message_id: str) -> None:
        self.handler = handler
        self.header = header
        super().__init__(
            f"Handler {handler} needs header {header!r}, but message {message_id} does not "
            f"carry it. Send the header, or give the parameter a default value."
        )


class AggregateNotFound(EcopyError):
    """An action was sent to an aggregate (or saga) that does not exist."""

    def __init__(self, *, aggregate: str, identifier: object, handler: str) -> None:
        self.aggregate = aggregate
        self.identifier = identifier
        super().__init__(
            f"{aggregate} with identifier {identifier!r} was not found for handler {handler}. "
            f"Create it first, or declare the handler with drop_message_on_not_found=True."
        )

    @classmethod
    def in_test(cls, aggregate: str, identifier: object) -> AggregateNotFound:
        error = cls.__new__(cls)
        error.aggregate, error.identifier = aggregate, identifier
        EcopyError.__init__(
            error,
            f"{aggregate} with identifier {identifier!r} does not exist in this flow test; "
            f"create it with a command, or give it with with_state_for / with_events_for",
        )
        return error


class IdentifierNotFound(NonRetryableError):
    """A message does not say which aggregate (or saga) it is for."""


class ConcurrencyError(EcopyError):
    """A save was based on a stale version of an aggregate; nothing was changed.

    Besides the explanation, it says which aggregate (its type name, or the event stream's
    name when raised by an event store used directly), which identifier, the version the
    change was based on (``expected_version``) and the version stored (``actual_version``),
    so that an API can report the conflict to its client (ecopy.web.fastapi answers 409 with
    these fields). Each is ``None`` where the code that raised the error did not know it.
    """

    def __init__(
        self,
        message: str,
        *,
        aggregate: str | None = None,
        identifier: object = None,
        expected_version: int | None = None,
        actual_version: int | None = None,
    ) -> None:
        self.aggregate = aggregate
        self.identifier = identifier
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(message)


class AggregateDefinitionError(EcopyError):
    """An aggregate handler returned something the framework cannot use."""


class BlockingCallInEventLoop(RuntimeWarning):
    """A synchronous bus was called from inside a running asyncio event loop.

    The synchronous buses run the handlers in the caller's thread, so such a call blocks the
    loop: nothing else on it (other requests of an asyncio web server) runs until the handlers
    finish. Await the awaitable facades (``app.async_command_bus`` …) instead, or run the call
    in a thread pool. Turn it into an error in tests with
    ``filterwarnings = ["error::ecopy.BlockingCallInEventLoop"]``.
    """
