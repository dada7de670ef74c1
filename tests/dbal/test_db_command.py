"""``ecopy db setup|drop`` (issue 5): create and remove every table ecopy needs, idempotently,
for the application's database or a URL."""

from __future__ import annotations

import textwrap

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ecopy.cli.main import cli
from ecopy_dbal import schema
from ecopy_dbal.event_store import events_table

ECOPY_TABLES = {
    "ecopy_messages",
    "ecopy_dead_letters",
    "ecopy_deduplication",
    "ecopy_documents",
    "ecopy_events",
    "ecopy_snapshots",
    "ecopy_projections",
}


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def ecopy(*arguments: str):
    return CliRunner().invoke(cli, list(arguments), catch_exceptions=False)


@pytest.fixture
def empty_url(database_url):
    engine = sa.create_engine(database_url)
    schema.drop(engine)
    engine.dispose()
    return database_url


def test_setup_creates_every_table_and_can_run_again(empty_url):
    first = ecopy("db", "setup", "--url", empty_url)
    second = ecopy("db", "setup", "--url", empty_url)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "ecopy tables ready" in second.output
    assert tables(empty_url) >= ECOPY_TABLES


def indexes(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {index["name"] for index in sa.inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_setup_adds_an_index_a_newer_ecopy_declares_to_a_table_that_exists(empty_url):
    ecopy("db", "setup", "--url", empty_url)
    engine = sa.create_engine(empty_url)
    (index,) = (i for i in events_table.indexes if i.name == "ix_ecopy_events_stream_position")
    index.drop(engine)  # the table as an earlier ecopy made it
    with engine.begin() as connection:
        connection.execute(
            events_table.insert().values(
                stream="s",
                aggregate_id="a",
                version=1,
                event_type="e",
                payload="{}",
                metadata="{}",
                recorded_at=0.0,
            )
        )
    engine.dispose()
    assert "ix_ecopy_events_stream_position" not in indexes(empty_url, "ecopy_events")

    result = ecopy("db", "setup", "--url", empty_url)

    assert result.exit_code == 0, result.output
    assert "ix_ecopy_events_stream_position" in indexes(empty_url, "ecopy_events")
    engine = sa.create_engine(empty_url)
    with engine.connect() as connection:
        assert connection.execute(sa.select(events_table.c.stream)).scalars().all() == ["s"]
    engine.dispose()


def test_drop_removes_them_and_can_run_again(empty_url):
    ecopy("db", "setup", "--url", empty_url)

    first = ecopy("db", "drop", "--url", empty_url, "--yes")
    second = ecopy("db", "drop", "--url", empty_url, "--yes")

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert not ECOPY_TABLES & tables(empty_url)


def test_drop_asks_before_it_destroys_anything(empty_url):
    ecopy("db", "setup", "--url", empty_url)

    result = CliRunner().invoke(cli, ["db", "drop", "--url", empty_url], input="n\n")

    assert result.exit_code == 1
    assert "Drop every ecopy table" in result.output
    assert tables(empty_url) >= ECOPY_TABLES


def test_setup_uses_the_database_of_the_application(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    (tmp_path / "db_shop.py").write_text(
        textwrap.dedent(
            f"""
            import ecopy
            from ecopy_dbal import DbalConfiguration

            system = ecopy.bootstrap(
                config=ecopy.ServiceConfiguration(
                    extensions=[DbalConfiguration(url={url!r}, auto_setup=False)]
                )
            )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    result = ecopy("--app", "db_shop:system", "db", "setup")

    assert result.exit_code == 0, result.output
    assert tables(url) >= ECOPY_TABLES


def test_an_application_without_a_database_is_told_what_to_add(tmp_path, monkeypatch):
    (tmp_path / "memory_shop.py").write_text("import ecopy\nsystem = ecopy.bootstrap()\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    result = CliRunner().invoke(cli, ["--app", "memory_shop:system", "db", "setup"])

    assert result.exit_code == 1
    assert "has no database: add DbalConfiguration(url=...)" in result.output
