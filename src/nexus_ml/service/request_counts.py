"""The job that moves the request tally's per-minute counts into the database.

Every ``FLUSH_SECONDS`` (and once at shutdown) the counts the request middleware added to the
tally (monitoring/request_tally.py) are added to ``request_rollups``; a flush that fails (the
database is down) puts them back, so the next one adds them: nothing is lost while the process
lives. (A write that committed but whose answer was lost would be added twice: the counts carry
no id to deduplicate by, unlike the prediction records.) In memory meanwhile: about 20 integers
per minute of outage.
"""

from __future__ import annotations

from nexus_ml.monitoring.request_tally import RequestTally
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Unavailable

FLUSH_SECONDS = 5.0
# The in-process bands score the last minute that ended at least this long ago, so that every
# instance has flushed it (a flush every FLUSH_SECONDS, plus the time its write takes).
SETTLE_SECONDS = 3 * FLUSH_SECONDS


class RequestCounts:
    """Flushes one process's request tally into the stored per-minute counts."""

    def __init__(self, tally: RequestTally, db: Database) -> None:
        self.tally = tally
        self._db = db

    async def flush(self) -> int:
        """Add what the tally holds to the database; returns the rows upserted."""
        taken = self.tally.take()
        if not taken:
            return 0
        try:
            return await self._db.run(self._db.store.add_request_counts, taken)
        except Unavailable:
            # Counted where it happened (Database.run); the next flush tries again, quietly
            # rather than as a failed job every few seconds of the outage.
            self.tally.put_back(taken)
            return 0
        except BaseException:
            self.tally.put_back(taken)
            raise
