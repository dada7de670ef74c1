"""The tables ecopy keeps: one ``MetaData`` that every store module adds its tables to.

``setup`` creates whatever is missing and ``drop`` removes them; both are idempotent. Column
types are chosen to work the same on SQLite, PostgreSQL and MariaDB/MySQL.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Engine

from ecopy.errors import EcopyError

metadata = sa.MetaData()

#: Text without the 64 KiB limit of MySQL's TEXT.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class Timestamp(sa.types.TypeDecorator[float]):
    """A moment: seconds since the epoch (UTC) in Python, a real timestamp in the table, with
    microseconds, so that an operator reads and compares it in SQL as a date and time.

    * PostgreSQL: ``timestamp with time zone``.
    * MariaDB/MySQL: ``DATETIME(6)`` holding UTC (the session's time zone plays no part).
    * SQLite, which has no timestamp type: ISO-8601 text in UTC, fixed width,
      ``2026-03-01 12:00:00.250000`` (declared ``DATETIME``). Text of one width sorts in time
      order, SQLite's date functions read it, and so does a person.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True, precision=6))
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())  # SQLite: DATETIME, text

    def process_bind_param(self, value: float | datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
        moment = moment.astimezone(UTC)
        return moment if dialect.name == "postgresql" else moment.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> float | None:
        return epoch_of(value)


def epoch_of(value: datetime | str | None) -> float | None:
    """Seconds since the epoch of a timestamp as a driver returns it: an aware datetime
    (PostgreSQL), a naive one in UTC (MariaDB), or ISO-8601 text in UTC (SQLite)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def driver_timestamp(seconds: float, dialect: str) -> datetime | str:
    """A moment as the driver takes it for a ``Timestamp`` column, for statements run with
    ``exec_driver_sql`` (no SQLAlchemy type processing)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    if dialect == "postgresql":
        return moment
    if dialect in ("mysql", "mariadb"):
        return moment.replace(tzinfo=None)
    return moment.strftime(_SQLITE_FORMAT)


_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

# The database server's clock, as a timestamp: one clock for every consumer, whatever each
# machine's clock says. Stable within a statement. SQLite's 'now' has milliseconds: padded to
# the width of the microseconds the text of the column has.
_DATABASE_NOW = {
    "postgresql": "statement_timestamp()",
    "mysql": "UTC_TIMESTAMP(6)",
    "mariadb": "UTC_TIMESTAMP(6)",
    "sqlite": "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')",
}


def unsupported_dialect(dialect: str, store: str = "ecopy_dbal") -> str:
    """Why ``store`` cannot run on ``dialect``, and what to do."""
    return (
        f"{store} runs on SQLite, PostgreSQL and MariaDB/MySQL, not on the database dialect "
        f"{dialect!r}; point DbalConfiguration at one of those"
    )


def database_now(dialect: str) -> sa.ColumnElement[float]:
    """The database's current time as an SQL expression of type ``Timestamp``."""
    try:
        text = _DATABASE_NOW[dialect]
    except KeyError:
        raise ValueError(unsupported_dialect(dialect)) from None
    return sa.literal_column(text, type_=Timestamp())


def database_now_plus(dialect: str, seconds: sa.ColumnElement[Any]) -> sa.ColumnElement[float]:
    """The database's current time plus ``seconds`` (a float expression, NULL gives NULL),
    with microseconds (milliseconds on SQLite), as an SQL expression of type ``Timestamp``."""
    later: sa.ColumnElement[Any]
    if dialect == "postgresql":
        zero: sa.ColumnElement[int] = sa.literal_column("0")
        interval = sa.func.make_interval(zero, zero, zero, zero, zero, zero, seconds)
        later = sa.literal_column(_DATABASE_NOW[dialect]) + interval
    elif dialect in ("mysql", "mariadb"):
        microseconds = sa.func.round(seconds * sa.literal_column("1000000"))
        later = sa.func.timestampadd(
            sa.literal_column("MICROSECOND"), microseconds, sa.literal_column("UTC_TIMESTAMP(6)")
        )
    elif dialect == "sqlite":
        day = sa.func.julianday(sa.literal_column("'now'")) + seconds / sa.literal_column("86400.0")
        later = sa.func.strftime(sa.literal_column("'%Y-%m-%d %H:%M:%f'"), day).concat(
            sa.literal_column("'000'")
        )
    else:
        raise ValueError(unsupported_dialect(dialect))
    return sa.type_coerce(later, Timestamp())


class Key(sa.types.TypeDecorator[str]):
    """Identifiers, names and keys, up to 255 characters, compared exactly everywhere.

    MySQL's default collations ignore case and trailing spaces, so "Order-1", "order-1" and
    "Order-1 " would be one key there; on MySQL it is stored as UTF-8 bytes instead (255
    characters of up to 4 bytes)."""

    impl = sa.String(255)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.VARBINARY(1020))
        return dialect.type_descriptor(sa.String(255))

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> Any:
        if value is not None and dialect.name in ("mysql", "mariadb"):
            return value.encode()
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        return value.decode() if isinstance(value, bytes) else value


_STORE_MODULES = (
    "ecopy_dbal.channel",
    "ecopy_dbal.dead_letter",
    "ecopy_dbal.deduplication",
    "ecopy_dbal.documents",
    "ecopy_dbal.event_store",
    "ecopy_dbal.projection_state",
)


def all_tables() -> list[sa.Table]:
    """Every table, once each store module has added its own."""
    for module in _STORE_MODULES:
        importlib.import_module(module)
    return list(metadata.sorted_tables)


MIGRATION_NOTE = "docs/dbal.md#upgrading-times-stored-as-timestamps"


class OutdatedSchema(EcopyError):
    """ecopy tables in the database were created by an older ecopy and must be converted."""

    def __init__(self, engine: Engine, outdated: list[tuple[str, str, str]]) -> None:
        self.columns = tuple(f"{table}.{column}" for table, column, _ in outdated)
        listed = ", ".join(f"{table}.{column} ({kind})" for table, column, kind in outdated)
        super().__init__(
            f"the ecopy tables in {engine.url.render_as_string(hide_password=True)} store "
            f"times as numbers (seconds since the epoch), as ecopy did before they became "
            f"timestamp columns: {listed}. Convert them as {MIGRATION_NOTE} describes (SQL for "
            f"each database, or drain the queue and recreate its table), then run `ecopy db "
            f"setup` again"
        )


def outdated_columns(engine: Engine) -> list[tuple[str, str, str]]:
    """The ``Timestamp`` columns of existing ecopy tables that are still numeric (epoch
    seconds, as ecopy stored them before): ``(table, column, type)`` for each."""
    expected = {
        table.name: {c.name for c in table.columns if isinstance(c.type, Timestamp)}
        for table in all_tables()
    }
    expected = {name: columns for name, columns in expected.items() if columns}
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names()) & set(expected)
    if not existing:
        return []
    found = inspector.get_multi_columns(filter_names=sorted(existing))
    outdated = []
    for (_schema, table), columns in sorted(found.items()):
        for column in columns:
            kind = column["type"]
            if column["name"] in expected[table] and isinstance(kind, (sa.Float, sa.Numeric)):
                outdated.append((table, column["name"], str(kind)))
    return outdated


def missing_tables(engine: Engine) -> list[str]:
    """The ecopy tables that do not exist in the database yet."""
    existing = set(sa.inspect(engine).get_table_names())
    return [table.name for table in all_tables() if table.name not in existing]


def check(engine: Engine) -> None:
    """Raise ``OutdatedSchema`` when existing ecopy tables still have the numeric time
    columns of an older ecopy (the queries would fail on them, or compare wrongly)."""
    outdated = outdated_columns(engine)
    if outdated:
        raise OutdatedSchema(engine, outdated)


def setup(engine: Engine) -> list[str]:
    """Create the tables that do not exist yet, and the indexes a newer ecopy added to tables
    that do; returns the names of all ecopy tables.

    Raises ``OutdatedSchema``, creating nothing, when existing tables need converting first."""
    check(engine)
    tables = all_tables()
    existing = set(sa.inspect(engine).get_table_names())
    metadata.create_all(engine, tables=tables, checkfirst=True)
    # create_all leaves a table that exists as it is, so an index added later is made here.
    for table in tables:
        if table.name in existing:
            for index in missing_indexes(engine, table):
                index.create(engine)
    return [table.name for table in tables]


def missing_indexes(engine: Engine, table: sa.Table) -> list[sa.Index]:
    """The indexes of ``table`` (which exists) that the database does not have yet."""
    present = {index["name"] for index in sa.inspect(engine).get_indexes(table.name)}
    return [index for index in table.indexes if index.name not in present]


def drop(engine: Engine) -> list[str]:
    """Drop every ecopy table that exists; returns their names."""
    tables = all_tables()
    metadata.drop_all(engine, tables=tables, checkfirst=True)
    return [table.name for table in tables]
