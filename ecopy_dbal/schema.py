"""The tables ecopy keeps: one ``MetaData`` that every store module adds its tables to.

``setup`` creates whatever is missing and ``drop`` removes them; both are idempotent. Column
types are chosen to work the same on SQLite, PostgreSQL and MariaDB/MySQL.
"""

from __future__ import annotations

import importlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

#: Text without the 64 KiB limit of MySQL's TEXT.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

#: Seconds since the epoch, with sub-millisecond precision.
Timestamp: sa.Double[float] = sa.Double()

# The database server's clock, as seconds since the epoch (UTC): one clock for every consumer,
# whatever each machine's clock says. Stable within a statement.
_DATABASE_NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS DOUBLE PRECISION)",
    # Arithmetic on UTC_TIMESTAMP(6): UNIX_TIMESTAMP() would read it in the session's zone.
    "mysql": "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) / 1000000.0)",
    "mariadb": "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) / 1000000.0)",
    # julianday('now') has millisecond precision and is fixed for the statement.
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def database_now(dialect: str) -> sa.ColumnElement[float]:
    """The database's current time in ``Timestamp`` form, as an SQL expression."""
    try:
        text = _DATABASE_NOW[dialect]
    except KeyError:
        raise ValueError(f"no clock expression for database dialect {dialect!r}") from None
    return sa.literal_column(text, type_=sa.Double())


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
)


def all_tables() -> list[sa.Table]:
    """Every table, once each store module has added its own."""
    for module in _STORE_MODULES:
        importlib.import_module(module)
    return list(metadata.sorted_tables)


def setup(engine: Engine) -> list[str]:
    """Create the tables that do not exist yet; returns the names of all ecopy tables."""
    tables = all_tables()
    metadata.create_all(engine, tables=tables, checkfirst=True)
    return [table.name for table in tables]


def drop(engine: Engine) -> list[str]:
    """Drop every ecopy table that exists; returns their names."""
    tables = all_tables()
    metadata.drop_all(engine, tables=tables, checkfirst=True)
    return [table.name for table in tables]
