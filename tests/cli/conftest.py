from __future__ import annotations

import pytest

from tests.cli.invoking import Invoke, invoke_ecopy


@pytest.fixture
def invoke() -> Invoke:
    """``invoke("--app", SAMPLE_APP, "list", env={...})`` runs ``ecopy`` in-process."""
    return invoke_ecopy
