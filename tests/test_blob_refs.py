"""A shared blob is never deleted under a row about to reference it (service/blob_refs).

The store is content-addressed: the PDF an old message carried and the PDF a new message
carries are one blob. A retention run deleting the old message's copy must not delete the
blob while a writer that stored (or found) it has not committed its own reference yet —
whichever transaction runs first, the new row ends up pointing at bytes that exist.
"""

from __future__ import annotations

import base64
import threading

import pytest

from litemx.storage import sending_repo
from litemx.storage.blobs import content_key
from tests.support.inbox import Mail
from tests.support.retention_helpers import SUPPORT, T0, attachment_rows, blob_keys, days, host, ingest

PDF = b"%PDF-1.4 shared quarterly report " + bytes(range(256)) * 8
KEY = content_key(PDF)
LATER = T0 + days(70)  # the old message (60-day window) has expired by then


@pytest.fixture
def acme(services, tenant, clock):
    clock.current = T0
    return host(services, tenant.token)


def _old_message_with_the_pdf(services, clock) -> str:
    old = ingest(services, clock, T0, Mail(subject="Q3", text="report", to=SUPPORT, message_id="<old@sender.example>",
                                           files=[("report.pdf", "application/pdf", PDF)]))[0]
    assert KEY in blob_keys(services, old) and services.infra.blobs.exists(KEY)
    return old


def _hook_put_many(monkeypatch, services, on_pdf):
    """Call on_pdf() right after the blob store has stored a batch holding the PDF (once)."""
    blobs = services.infra.blobs
    original = blobs.put_many
    armed = [True]

    def put_many(items):
        keys = original(items)
        if armed[0] and PDF in items:
            armed[0] = False
            on_pdf()
        return keys

    monkeypatch.setattr(blobs, "put_many", put_many)


def test_a_deleter_waits_for_a_writer_holding_the_blob(services, acme, clock, monkeypatch):
    """Writer first: a draft stores the PDF inside its transaction and has not committed; a
    retention run removing the old message's reference must wait, then see the draft's."""
    _old_message_with_the_pdf(services, clock)
    stored, go = threading.Event(), threading.Event()

    def pause_inside_the_draft_transaction():
        stored.set()
        assert go.wait(20)

    _hook_put_many(monkeypatch, services, pause_inside_the_draft_transaction)
    clock.current = LATER
    results: dict[str, object] = {}

    def create_draft():
        results["draft"] = services.drafts.create(acme, SUPPORT, to=["bob@example.net"], subject="fwd", attachments=[
            {"filename": "report.pdf", "content_type": "application/pdf",
             "content_base64": base64.b64encode(PDF).decode("ascii")}])

    writer = threading.Thread(target=create_draft)
    writer.start()
    assert stored.wait(20)
    deleter = threading.Thread(target=lambda: results.update(run=services.retention.run(acme, LATER)))
    deleter.start()
    deleter.join(0.5)
    blocked = deleter.is_alive()
    go.set()
    writer.join(20)
    deleter.join(20)

    assert blocked, "the retention run went ahead while the draft held the blob"
    assert results["run"]["counts"]["messages_cleaned"] == 1
    assert services.infra.blobs.exists(KEY)
    with services.infra.db.read() as conn:
        files = sending_repo.draft_attachments_of(conn, [results["draft"]["id"]])[results["draft"]["id"]]
    assert [f["blob_key"] for f in files] == [KEY]
    assert services.infra.blobs.get(KEY) == PDF


def test_inbound_puts_back_a_blob_deleted_before_its_transaction(services, acme, clock, monkeypatch):
    """Deleter first: inbound processing writes a batch's blobs before its storing
    transaction; a retention run that commits in between deletes the PDF (no committed row
    references it any more). The storing transaction puts it back before referencing it."""
    old = _old_message_with_the_pdf(services, clock)
    runs: list[dict] = []
    _hook_put_many(monkeypatch, services, lambda: runs.append(services.retention.run(acme, LATER)))

    new = ingest(services, clock, LATER, Mail(subject="Q4", text="report again", to=SUPPORT,
                                              files=[("report.pdf", "application/pdf", PDF)]))[0]

    assert runs and runs[0]["counts"]["messages_cleaned"] == 1  # the old copy went in between
    assert [a["blob_key"] for a in attachment_rows(services, old)] == [None]
    assert [a["blob_key"] for a in attachment_rows(services, new)] == [KEY]
    assert services.infra.blobs.get(KEY) == PDF
