"""How many messages each channel holds: what ``ecopy status`` and ``app.channel_status()`` show.

A pollable channel that can count its messages implements :class:`StatusReportingChannel`;
the database queue and the in-memory queue do, broker channels may. The counts, for one
channel at the moment it is asked:

* **waiting** — stored and not claimed by any consumer: the messages due now plus those whose
  delivery delay has not passed yet. Messages whose time to live has passed are not counted:
  they will be dropped, never delivered.
* **due** — the waiting messages that a consumer would take now (delay over, not expired).
* **in flight** — claimed by a consumer whose claim has not expired: being handled, or
  prefetched by it. A message whose claim expired (its consumer died) is waiting again.
* **dead-lettered** — entries in the dead-letter store that failed on this channel.

A count a channel cannot tell is ``None``: shown as "not reported".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol, runtime_checkable

from ecopy.errors import EcopyError
from ecopy.messaging.channel import MessageChannel, PollableChannel
from ecopy.messaging.dead_letter import DeadLetterStore


@dataclass(frozen=True)
class ChannelStatus:
    """The counts of one channel (see the module documentation for what each one means).

    ``declared`` is false for a channel the application does not declare but that dead
    letters failed on (a channel since removed or renamed): only its dead letters are known.
    """

    channel: str
    waiting: int | None = None
    due: int | None = None
    in_flight: int | None = None
    dead_lettered: int | None = None
    declared: bool = True

    @property
    def reported(self) -> bool:
        """Whether the channel counted its messages."""
        return self.waiting is not None

    def as_dict(self) -> dict[str, Any]:
        """The fields and ``reported``, for JSON."""
        return {**asdict(self), "reported": self.reported}


@runtime_checkable
class StatusReportingChannel(Protocol):
    """A channel that can count the messages it holds, cheaply (one query or call).

    ``channel_status`` fills ``waiting``, ``due`` and ``in_flight`` (``None`` for one it cannot
    tell, as a broker that does not know about delays); ``dead_lettered`` is left ``None``, the
    dead-letter store supplies it.
    """

    name: str

    def channel_status(self) -> ChannelStatus: ...


class UnknownChannel(EcopyError):
    """A status was asked for a channel the application does not have as a pollable channel."""

    def __init__(self, names: Iterable[str], known: Iterable[str]) -> None:
        self.names = tuple(names)
        self.known = tuple(sorted(known))
        unknown = ", ".join(repr(name) for name in self.names)
        listed = ", ".join(self.known) or "none"
        noun = "channel" if len(self.names) == 1 else "channels"
        super().__init__(f"Unknown {noun} {unknown}; known channels: {listed}")


def queue_names(channels: Mapping[str, MessageChannel]) -> list[str]:
    """The channels that hold messages (the pollable ones), sorted by name."""
    return sorted(name for name, queue in channels.items() if isinstance(queue, PollableChannel))


def channel_statuses(
    channels: Mapping[str, MessageChannel],
    dead_letters: DeadLetterStore,
    names: Iterable[str] = (),
) -> list[ChannelStatus]:
    """The status of the named pollable channels, or of all of them when none is named (then
    also of the channels dead letters failed on that the application no longer declares).

    Raises ``UnknownChannel`` for a name that is not a pollable channel of ``channels``."""
    known = queue_names(channels)
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UnknownChannel(unknown, known)
    dead = dead_letters.count_by_channel()
    statuses = []
    for name in wanted or known:
        channel = channels[name]
        if isinstance(channel, StatusReportingChannel):
            status = replace(channel.channel_status(), channel=name)
        else:
            status = ChannelStatus(name)
        statuses.append(replace(status, dead_lettered=dead.get(name, 0)))
    if not wanted:
        statuses.extend(
            ChannelStatus(name, dead_lettered=count, declared=False)
            for name, count in sorted(dead.items())
            if name not in channels and count
        )
    return statuses
