"""``--app`` / ``ECOPY_APP``: what loads, and how each mistake is explained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import Result

from tests.cli.invoking import SAMPLE_APP, Invoke


def assert_clean_failure(result: Result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)  # a click error, not a crash
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_loads_a_messaging_system_attribute(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "list")

    assert result.exit_code == 0, result.output
    assert "place_order" in result.output


def test_loads_a_zero_argument_factory(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.sample_app:create_system", "graph")

    assert result.exit_code == 0, result.output
    assert "endpoint place_order" in result.output


def test_the_ecopy_app_environment_variable_names_the_application(invoke: Invoke) -> None:
    result = invoke("list", env={"ECOPY_APP": SAMPLE_APP})

    assert result.exit_code == 0, result.output
    assert "place_order" in result.output


def test_the_option_wins_over_the_environment_variable(invoke: Invoke) -> None:
    result = invoke(
        "--app", "tests.cli.odd_apps:empty_system", "list", env={"ECOPY_APP": SAMPLE_APP}
    )

    assert result.exit_code == 0, result.output
    assert "No endpoints" in result.output


def test_a_missing_application_says_how_to_give_one(invoke: Invoke) -> None:
    result = invoke("list")

    assert_clean_failure(result, 2, "--app", "ECOPY_APP")


def test_a_reference_without_attribute_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.sample_app", "list")

    assert_clean_failure(result, 2, "module:attribute")


def test_help_needs_no_application(invoke: Invoke) -> None:
    result = invoke("graph", "--help")

    assert result.exit_code == 0
    assert "--format" in result.output


def test_an_unknown_module_is_named(invoke: Invoke) -> None:
    result = invoke("--app", "shop_that_does_not_exist:system", "list")

    assert_clean_failure(
        result,
        1,
        "Cannot import module 'shop_that_does_not_exist'",
        "No module named 'shop_that_does_not_exist'",
    )


def test_an_error_while_importing_the_module_is_shown_with_its_place(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.unimportable_app:system", "list")

    assert_clean_failure(
        result,
        1,
        "Importing module 'tests.cli.unimportable_app' failed",
        "unimportable_app.py:5",
        "ModuleNotFoundError: No module named 'ecopy_module_that_does_not_exist'",
    )


def test_a_missing_attribute_is_named_with_the_systems_the_module_has(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.sample_app:app", "list")

    assert_clean_failure(
        result,
        1,
        "Module 'tests.cli.sample_app' has no attribute 'app'",
        "MessagingSystem attributes: system",
    )


@pytest.mark.parametrize(
    ("attribute", "explanation"),
    [
        ("not_a_system", "is a dict, not a MessagingSystem"),
        ("factory_needing_arguments", "needs arguments (service_name)"),
        ("failing_factory", "raised an error"),
        ("factory_returning_something_else", "returned a str, not a MessagingSystem"),
    ],
)
def test_an_attribute_that_is_not_an_application_is_explained(
    invoke: Invoke, attribute: str, explanation: str
) -> None:
    result = invoke("--app", f"tests.cli.odd_apps:{attribute}", "list")

    assert_clean_failure(result, 1, f"tests.cli.odd_apps:{attribute}", explanation)


def test_a_failing_factory_shows_its_error(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.odd_apps:failing_factory", "list")

    assert_clean_failure(result, 1, "RuntimeError: the database is down", "odd_apps.py")


def test_a_module_in_the_working_directory_is_importable(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ecopy_cli_cwd_shop.py").write_text(
        "from ecopy import bootstrap, command_handler\n"
        "\n"
        "class Shop:\n"
        '    @command_handler("shop.open", endpoint_id="open_shop")\n'
        "    def open(self) -> None: ...\n"
        "\n"
        "system = bootstrap(classes=[Shop], services=[Shop()])\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "ecopy_cli_cwd_shop", raising=False)

    result = invoke("--app", "ecopy_cli_cwd_shop:system", "list")
    sys.modules.pop("ecopy_cli_cwd_shop", None)

    assert result.exit_code == 0, result.output
    assert "open_shop" in result.output
