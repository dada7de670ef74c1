"""Markers for handler parameters, used inside ``typing.Annotated``.

>>> from typing import Annotated
>>> def handle(command: dict, tenant: Annotated[str, Header("tenant")]) -> None: ...
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Header:
    """Bind one header: ``Annotated[str, Header("tenant")]``.

    A missing header takes the parameter's default, or ``None`` when the annotation is
    optional; otherwise the call fails with :class:`~ecopy.errors.MissingHeader`.
    """

    name: str


class Headers:
    """Bind all headers as a dict: ``Annotated[dict, Headers]``."""


@dataclass(frozen=True, slots=True)
class Reference:
    """Bind a service by its name: ``Annotated[Mailer, Reference("mailer")]``."""

    name: str
