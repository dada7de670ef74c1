from __future__ import annotations

import pytest

from tests.cli import async_app
from tests.cli.async_app import Notifications, Payments
from tests.cli.invoking import Invoke, invoke_ecopy
from tests.cli.payments_shop import PaymentsShop


@pytest.fixture
def invoke() -> Invoke:
    """``invoke("--app", SAMPLE_APP, "list", env={...})`` runs ``ecopy`` in-process."""
    return invoke_ecopy


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> PaymentsShop:
    """A fresh payments shop behind ``--app tests.cli.async_app:system``."""
    payments, notifications = Payments(), Notifications()
    system = async_app.create_system(payments, notifications)
    monkeypatch.setattr(async_app, "system", system)
    return PaymentsShop(system, payments, notifications)
