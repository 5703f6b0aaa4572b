"""Bounces and complaints (SPEC §6): DSNs (RFC 3464) and ARF reports (RFC 5965) mailed to the
MAIL FROM address, and SES notifications, become events on the message, settle the delivery
and put the recipient on the account's suppression list (listed and removed via API and CLI)."""

from __future__ import annotations

import json
import smtplib

import pytest
from typer.testing import CliRunner

from litemx.adapters.cli.main import app
from litemx.adapters.outbound import SmtpRelayTransport
from litemx.core import dsn
from litemx.errors import InvalidRequest, SendBlocked
from litemx.storage import sending_repo
from tests.support.api import assert_error, audit_since, bearer
from tests.support.live import live_http, live_smtp, wait_for
from tests.support.sending import MAILBOX, SmtpSink, delivery_rows, hosted, message_status, run_worker


@pytest.fixture
def caller(services, tenant, dns):
    return hosted(services, tenant.token, dns)


@pytest.fixture
def sent(services, caller):
    """One message to bob@example.net, delivered (250) through a loopback smarthost."""
    with SmtpSink() as sink:
        services.outbound.transport = SmtpRelayTransport("127.0.0.1", sink.port, "mx.litemx.test", timeout=10)
        result = services.sending.send_direct(caller, MAILBOX, ["bob@example.net"], subject="Invoice 7")
        run_worker(services)
    [delivery] = delivery_rows(services)
    assert delivery["status"] == "delivered"
    return {**result, "delivery": delivery}


def delivery_status_report(headers: str, recipient: str = "bob@example.net", action: str = "failed",
                           status: str = "5.1.1") -> bytes:
    """A DSN as Postfix writes one (RFC 3464 inside RFC 6522 multipart/report)."""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "To: whoever@bounce.project.dev\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\r\n\r\n'
        "--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n\r\n"
        "--BOUNDARY\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Sat, 14 Mar 2026 15:09:26 +0000\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected\r\n\r\n"
        "--BOUNDARY\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{headers}\r\n--BOUNDARY--\r\n").encode()


def feedback_report(message_id: str, recipient: str = "bob@example.net") -> bytes:
    """An ARF abuse report (RFC 5965 §3 example, trimmed)."""
    return (
        "From: <abusedesk@example.net>\r\nTo: fbl@bounce.project.dev\r\nSubject: FW: Invoice 7\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="part1"\r\n\r\n'
        "--part1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--part1\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n\r\n"
        "--part1\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        f"From: support@project.dev\r\nTo: {recipient}\r\nSubject: Invoice 7\r\nMessage-ID: {message_id}\r\n\r\n"
        "Pay up.\r\n\r\n--part1--\r\n").encode()


def _headers(sent) -> str:
    return f"From: support@project.dev\r\nTo: bob@example.net\r\nMessage-ID: {sent['message_id_header']}\r\n"


def _deliver_inbound(services, raw: bytes, rcpt: str) -> None:
    route = services.inbound.route_recipient(rcpt)
    assert route.accepted and route.via == "bounce", route
    services.inbound.accept(raw, "", [route], client_ip="192.0.2.9", helo="mx.example.net")
    services.inbound.process_due()


def _events(services, message_id):
    with services.infra.db.read() as conn:
        return [(e["type"], e["status"], e["source"]) for e in sending_repo.events_of(conn, message_id)]


def _suppressed(services, caller, address="bob@example.net"):
    with services.infra.db.read() as conn:
        return sending_repo.suppressed_among(conn, caller.principal.account_id, [address])


def test_a_dsn_to_the_verp_address_over_smtp_bounces_and_suppresses(services, caller, sent):
    verp = sent["delivery"]["envelope_from"]
    with live_smtp(services) as (host, port):
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            assert smtp.sendmail("", [verp], delivery_status_report(_headers(sent))) == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused):  # still no open relay
                smtp.sendmail("", ["someone@bounce.elsewhere.example"], b"Subject: x\r\n\r\nx\r\n")
        wait_for(lambda: _events(services, sent["id"]))
    assert _events(services, sent["id"]) == [("bounce", "5.1.1", "dsn")]
    assert delivery_rows(services)[0]["status"] == "failed" and message_status(services, sent["id"]) == "failed"
    assert _suppressed(services, caller) == ["bob@example.net"]
    events = [(e["action"], e["interface"], e["mailbox"]) for e in audit_since(services, 0)
              if e["action"] in ("send.bounced", "suppression.add")]
    assert events == [("send.bounced", "smtp", MAILBOX), ("suppression.add", "smtp", MAILBOX)]
    with pytest.raises(SendBlocked) as blocked:
        services.sending.send_direct(caller, MAILBOX, ["bob@example.net"], subject="again")
    assert blocked.value.reasons == ["recipient_suppressed"]


def test_a_dsn_without_verp_is_matched_by_the_original_message_id(services, caller, sent):
    _deliver_inbound(services, delivery_status_report(_headers(sent)), "postmaster@bounce.project.dev")
    assert _events(services, sent["id"]) == [("bounce", "5.1.1", "dsn")]
    assert _suppressed(services, caller) == ["bob@example.net"]


def test_a_delay_notice_is_recorded_without_suppressing(services, caller, sent):
    raw = delivery_status_report(_headers(sent), action="delayed", status="4.4.7")
    _deliver_inbound(services, raw, sent["delivery"]["envelope_from"])
    assert _events(services, sent["id"]) == [("delay", "4.4.7", "dsn")]
    assert delivery_rows(services)[0]["status"] == "delivered" and _suppressed(services, caller) == []


def test_an_arf_complaint_suppresses_the_recipient(services, caller, sent):
    _deliver_inbound(services, feedback_report(sent["message_id_header"]), "fbl@bounce.project.dev")
    assert _events(services, sent["id"]) == [("complaint", None, "arf")]
    assert _suppressed(services, caller) == ["bob@example.net"]
    [event] = [e for e in audit_since(services, 0) if e["action"] == "send.complained"]
    assert event["details"]["feedback_type"] == "abuse"


def test_a_forged_dsn_cannot_touch_another_accounts_delivery(services, caller, sent, other_tenant):
    other = services.auth.authenticate(other_tenant.token, "api", None, None)
    services.directory.create_domain(other, "other.dev")
    forged = sent["delivery"]["envelope_from"].replace("bounce.project.dev", "bounce.other.dev")
    _deliver_inbound(services, delivery_status_report(_headers(sent)), forged)
    assert _events(services, sent["id"]) == [] and _suppressed(services, caller) == []


def test_mail_at_the_bounce_domain_that_is_no_report_is_dropped(services, caller, sent):
    _deliver_inbound(services, b"From: a@example.net\r\nSubject: hello\r\n\r\nhi\r\n", "bounce@bounce.project.dev")
    assert _events(services, sent["id"]) == []


def _sns(kind: str, body: dict, message_id: str) -> dict:
    note = {"notificationType": kind, "mail": {"messageId": message_id, "destination": ["bob@example.net"]}, **body}
    return {"Type": "Notification", "MessageId": "sns-1", "Message": json.dumps(note)}


@pytest.fixture
def ses_sent(services, caller):
    result = services.sending.send_direct(caller, MAILBOX, ["bob@example.net"], subject="Invoice 8")
    with services.infra.db.write() as conn:
        sending_repo.update_delivery(conn, result["deliveries"][0]["id"],
                                     {"status": "delivered", "provider_id": "0100-ses-id"})
    return result


def test_ses_bounce_and_complaint_notifications_are_applied(services, caller, ses_sent):
    bounces = services.bounces
    transient = {"bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "bob@example.net"}]}}
    assert bounces.process_ses_notification(_sns("Bounce", transient, "0100-ses-id"))["matched"] == 1
    assert _suppressed(services, caller) == []
    permanent = {"bounce": {"bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [
        {"emailAddress": "Bob@Example.net", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 unknown"}]}}
    assert bounces.process_ses_notification(_sns("Bounce", permanent, "0100-ses-id"))["matched"] == 1
    complaint = {"complaint": {"complainedRecipients": [{"emailAddress": "bob@example.net"}],
                               "complaintFeedbackType": "abuse"}}
    assert bounces.process_ses_notification(_sns("Complaint", complaint, "0100-ses-id"))["matched"] == 1
    assert bounces.process_ses_notification(_sns("Bounce", permanent, "unknown-id"))["matched"] == 0
    assert _events(services, ses_sent["id"]) == [("delay", None, "ses"), ("bounce", "5.1.1", "ses"),
                                                 ("complaint", None, "ses")]
    assert _suppressed(services, caller) == ["bob@example.net"]
    with pytest.raises(InvalidRequest):
        bounces.process_ses_notification({"hello": "world"})


def test_suppressions_are_listed_and_removed_through_the_api_and_the_cli(services, client, caller, sent, tenant,
                                                                         monkeypatch, tmp_path):
    _deliver_inbound(services, delivery_status_report(_headers(sent)), sent["delivery"]["envelope_from"])
    h = bearer(tenant.token)
    [item] = client.get("/api/suppressions", headers=h).json()["items"]
    assert (item["address"], item["reason"], item["mailbox"]) == ("bob@example.net", "bounce", MAILBOX)
    services.directory.create_mailbox(caller, "sales@project.dev")
    bot = client.post("/api/tokens", headers=h, json={"name": "bot", "scopes": ["email:send"],
                                                      "mailboxes": ["sales@project.dev"]}).json()["token"]
    assert client.get("/api/suppressions", headers=bearer(bot)).json()["items"] == []
    assert_error(client.delete("/api/suppressions/bob@example.net", headers=bearer(bot)), 404, "not_found")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = CliRunner()
    with live_http(services) as url:
        env = {"LITEMX_URL": url, "LITEMX_TOKEN": tenant.token}
        listed = runner.invoke(app, ["suppressions", "list"], env=env)
        assert listed.exit_code == 0 and "bob@example.net" in listed.stdout
        removed = runner.invoke(app, ["suppressions", "remove", "bob@example.net", "--json"], env=env)
        assert removed.exit_code == 0 and json.loads(removed.stdout) == {"deleted": True, "address": "bob@example.net"}
        again = runner.invoke(app, ["suppressions", "remove", "bob@example.net"], env=env)
        assert again.exit_code == 5
    assert _suppressed(services, caller) == []
    events = [(e["interface"], e["resource_id"], e["outcome"]) for e in audit_since(services, 0)
              if e["action"] == "suppression.remove"]
    assert events == [("api", "bob@example.net", "denied"), ("cli", "bob@example.net", "ok"),
                      ("cli", "bob@example.net", "error")]
    assert services.sending.send_direct(caller, MAILBOX, ["bob@example.net"], subject="ok now")["status"] == "queued"


# -- the parsers on their own (no database) --------------------------------------------------------

def test_the_dsn_parser_reads_actions_statuses_and_the_original_message_id():
    report = dsn.parse_report(delivery_status_report("Message-ID: <abc@project.dev>\r\n", "x@example.net"))
    assert isinstance(report, dsn.DeliveryReport)
    assert report.original_message_id == "<abc@project.dev>" and report.reporting_mta == "mx.example.net"
    [r] = report.recipients
    assert (r.recipient, r.action, r.status) == ("x@example.net", "failed", "5.1.1")
    assert r.diagnostic.startswith("550 5.1.1")


def test_the_arf_parser_reads_the_feedback_type_and_recipient():
    report = dsn.parse_report(feedback_report("<abc@project.dev>", "y@example.net"))
    assert isinstance(report, dsn.ComplaintReport)
    assert (report.feedback_type, report.recipients, report.original_message_id) == (
        "abuse", ("y@example.net",), "<abc@project.dev>")


@pytest.mark.parametrize("raw", [b"", b"Subject: hi\r\n\r\nbody", b"\xff\xfe garbage",
                                 b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno parts"])
def test_anything_else_is_not_a_report(raw):
    assert dsn.parse_report(raw) is None
