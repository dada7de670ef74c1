"""The distribution is published as ``ecopy-messaging`` (``ecopy`` on PyPI is another project);
the import names stay ``ecopy`` and ``ecopy_dbal``."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_distribution_is_ecopy_messaging_and_provides_the_ecopy_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert project["name"] == "ecopy-messaging"
    provided = importlib.metadata.packages_distributions()
    assert set(provided["ecopy"]) == {"ecopy-messaging"}
    assert set(provided["ecopy_dbal"]) == {"ecopy-messaging"}


def test_the_extras_refer_to_the_distribution_by_its_own_name():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    self_references = [r for group in extras.values() for r in group if r.startswith("ecopy")]
    assert self_references
    assert all(r.startswith("ecopy-messaging[") for r in self_references)
