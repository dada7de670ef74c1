"""The tables ecopy keeps: one ``MetaData`` that every store module adds its tables to.

``setup`` creates whatever is missing and ``drop`` removes them; both are idempotent. Column
types are chosen to work the same on SQLite, PostgreSQL and MariaDB/MySQL.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

#: Text without the 64 KiB limit of MySQL's TEXT.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

#: Seconds since the epoch, with sub-millisecond precision.
Timestamp: sa.Double[float] = sa.Double()

#: Identifiers, names and keys (MySQL needs a length to index them).
Key = sa.String(255)

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
