"""ecopy_dbal: ecopy on SQL databases (SQLite, PostgreSQL, MariaDB/MySQL) through SQLAlchemy.

Add ``DbalConfiguration(url=...)`` to the extensions; see docs/dbal.md.
"""

from ecopy.messaging.transaction import without_transaction
from ecopy_dbal.configuration import DbalConfiguration, DbalDeadLetter
from ecopy_dbal.database import Database, NoTransactionInProgress

__all__ = [
    "Database",
    "DbalConfiguration",
    "DbalDeadLetter",
    "NoTransactionInProgress",
    "without_transaction",
]
