"""ecopy_dbal: ecopy on SQL databases (SQLite, PostgreSQL, MariaDB/MySQL) through SQLAlchemy.

Add ``DbalConfiguration(url=...)`` to the extensions; see docs/dbal.md.
"""

from ecopy.messaging.transaction import without_transaction
from ecopy_dbal.channel import DbalChannel
from ecopy_dbal.codec import StoredDataError
from ecopy_dbal.configuration import DbalConfiguration, DbalDeadLetter
from ecopy_dbal.database import Database, NoTransactionInProgress
from ecopy_dbal.dead_letter import DbalDeadLetterStore
from ecopy_dbal.deduplication import DbalDeduplicationStore
from ecopy_dbal.documents import DbalRepository
from ecopy_dbal.event_store import DbalEventStore, DbalSnapshotStore
from ecopy_dbal.projection_state import DbalProjectionStateStore

__all__ = [
    "Database",
    "DbalChannel",
    "DbalConfiguration",
    "DbalDeadLetter",
    "DbalDeadLetterStore",
    "DbalDeduplicationStore",
    "DbalEventStore",
    "DbalProjectionStateStore",
    "DbalRepository",
    "DbalSnapshotStore",
    "NoTransactionInProgress",
    "StoredDataError",
    "without_transaction",
]
