"""The inbound lease (inbound_repo.lease_due) reads the due rows in the order of the
(status, next_attempt_at) index and stops after its batch. Ordered by id, SQLite sorted every due
row of the backlog to keep the oldest few: 20 ms per lease at 100,000 queued messages, in the
storing transaction every worker waits for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from litemx.storage import inbound_repo
from tests.support.plans import plans


def _row(n: int, at: datetime) -> dict[str, Any]:
    return {"received_at": at, "raw_key": f"{n:064x}", "size": 10, "mail_from": "a@example.net",
            "recipients": [{"rcpt": "support@acme.example", "mailbox_id": "mbx_x"}], "client_ip": None,
            "helo": None, "source": "smtp", "status": "pending", "attempts": 0, "next_attempt_at": at,
            "processed_at": None, "raw": b"x"}


def test_the_lease_reads_the_pending_range_in_id_order_without_sorting(services):
    if services.infra.db.dialect != "sqlite":
        pytest.skip("a SQLite planner choice; PostgreSQL has the same index")
    def lease() -> None:
        with services.infra.db.write() as conn:
            inbound_repo.lease_due(conn, datetime.now(UTC), timedelta(minutes=5), 50)

    [plan] = plans(services, lease, lambda sql: sql.startswith("SELECT") and "inbound_queue" in sql)
    assert "ix_inbound_queue_status_next_attempt_at (status=? AND next_attempt_at<?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # the order comes from the index: no sort of the backlog


def test_the_lease_takes_the_earliest_due_rows_and_skips_leased_and_backed_off_ones(services):
    now = datetime.now(UTC)
    with services.infra.db.write() as conn:
        ids = inbound_repo.enqueue(conn, [_row(n, now - timedelta(seconds=10 - n)) for n in range(6)])
    with services.infra.db.write() as conn:
        inbound_repo.retry_later(conn, ids[1], now + timedelta(minutes=1), "later")
        inbound_repo.retry_later(conn, ids[4], now - timedelta(seconds=30), "due again before the others")
        first = [row["id"] for row in inbound_repo.lease_due(conn, now, timedelta(minutes=5), 2)]
    with services.infra.db.write() as conn:
        second = [row["id"] for row in inbound_repo.lease_due(conn, now, timedelta(minutes=5), 10)]
    assert first == [ids[4], ids[0]]  # due first, then arrival order
    assert second == [ids[2], ids[3], ids[5]]  # ids[1] backs off; the first lease's rows are held
