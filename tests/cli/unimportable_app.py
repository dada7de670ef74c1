"""An application module whose import fails, as a typo in a user's module would."""

from __future__ import annotations

import ecopy_module_that_does_not_exist  # type: ignore[import-not-found]  # noqa: F401
