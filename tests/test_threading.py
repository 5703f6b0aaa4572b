"""Thread decisions within one mailbox: references, In-Reply-To, own id, subject fallback, new."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from litemx.core.mime import parse_message
from litemx.core.threading import (
    SUBJECT_WINDOW,
    ThreadRule,
    candidate_ids,
    decide_thread,
    is_generic_subject,
    subject_key,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Headers:
    message_id: str | None = "<new@x>"
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    subject: str = "Quarterly report"


class SubjectIndex:
    """A data-only fake of the storage lookup: (key, received_at, thread) rows of one mailbox."""

    def __init__(self, rows: list[tuple[str, datetime, str]]):
        self.rows = rows
        self.calls: list[tuple[str, datetime]] = []

    def __call__(self, key: str, since: datetime) -> str | None:
        self.calls.append((key, since))
        hits = sorted((at, thread) for k, at, thread in self.rows if k == key and at >= since)
        return hits[-1][1] if hits else None


def decide(headers: Headers, known: dict[str, str] | None = None, subjects: SubjectIndex | None = None):
    return decide_thread(headers, received_at=NOW, thread_of=known or {}, thread_by_subject=subjects,
                         new_thread_id=lambda: "thr_new")


def test_a_message_naming_no_known_message_starts_a_new_thread() -> None:
    decision = decide(Headers())
    assert (decision.thread_id, decision.rule, decision.matched) == ("thr_new", ThreadRule.NEW, None)


def test_the_newest_known_reference_wins() -> None:
    known = {"<root@x>": "thr_root", "<mid@x>": "thr_mid"}
    decision = decide(Headers(references=("<root@x>", "<mid@x>", "<unknown@x>")), known)
    assert (decision.thread_id, decision.rule, decision.matched) == ("thr_mid", ThreadRule.REFERENCES, "<mid@x>")


def test_references_win_over_in_reply_to() -> None:
    known = {"<root@x>": "thr_root", "<parent@x>": "thr_parent"}
    decision = decide(Headers(in_reply_to="<parent@x>", references=("<root@x>",)), known)
    assert decision.rule is ThreadRule.REFERENCES and decision.thread_id == "thr_root"


def test_in_reply_to_is_used_when_no_reference_is_known() -> None:
    decision = decide(Headers(in_reply_to="<parent@x>", references=("<gone@x>",)), {"<parent@x>": "thr_p"})
    assert (decision.thread_id, decision.rule) == ("thr_p", ThreadRule.IN_REPLY_TO)


def test_a_redelivered_message_joins_the_thread_of_its_own_id() -> None:
    decision = decide(Headers(message_id="<dup@x>"), {"<dup@x>": "thr_dup"})
    assert (decision.thread_id, decision.rule) == ("thr_dup", ThreadRule.MESSAGE_ID)


def test_a_message_referencing_itself_is_not_matched_by_that_reference() -> None:
    decision = decide(Headers(message_id="<self@x>", references=("<self@x>",)), {"<self@x>": "thr_s"})
    assert decision.rule is ThreadRule.MESSAGE_ID


def test_a_callable_lookup_works_like_a_mapping() -> None:
    asked: list[str] = []

    def lookup(msg_id: str) -> str | None:
        asked.append(msg_id)
        return "thr_b" if msg_id == "<b@x>" else None

    decision = decide_thread(Headers(references=("<a@x>", "<b@x>", "<c@x>")), received_at=NOW,
                             thread_of=lookup, new_thread_id=lambda: "thr_new")
    assert decision.thread_id == "thr_b" and asked == ["<c@x>", "<b@x>"]


def test_candidate_ids_list_lookups_in_rule_order_without_duplicates() -> None:
    headers = Headers(message_id="<me@x>", in_reply_to="<b@x>", references=("<a@x>", "<b@x>"))
    assert candidate_ids(headers) == ["<b@x>", "<a@x>", "<me@x>"]


def test_a_reply_without_threading_headers_joins_by_subject_within_the_window() -> None:
    index = SubjectIndex([("quarterly report", NOW - timedelta(days=3), "thr_q")])
    decision = decide(Headers(subject="RE: [team] Quarterly   Report"), subjects=index)
    assert (decision.thread_id, decision.rule, decision.matched) == ("thr_q", ThreadRule.SUBJECT, "quarterly report")
    assert index.calls == [("quarterly report", NOW - SUBJECT_WINDOW)]


def test_the_subject_fallback_ignores_messages_older_than_the_window() -> None:
    index = SubjectIndex([("quarterly report", NOW - timedelta(days=31), "thr_old")])
    assert decide(Headers(subject="Re: Quarterly report"), subjects=index).rule is ThreadRule.NEW


def test_a_subject_without_a_reply_marker_never_joins_by_subject() -> None:
    index = SubjectIndex([("refund for order 1234", NOW - timedelta(days=1), "thr_other_customer")])
    assert decide(Headers(subject="Refund for order 1234"), subjects=index).rule is ThreadRule.NEW
    assert index.calls == []


def test_a_message_with_unknown_references_never_falls_back_to_its_subject() -> None:
    index = SubjectIndex([("quarterly report", NOW, "thr_q")])
    decision = decide(Headers(subject="Re: Quarterly report", references=("<elsewhere@x>",)), subjects=index)
    assert decision.rule is ThreadRule.NEW and index.calls == []


@pytest.mark.parametrize("subject", ["Re: hello", "Re: Question", "Re:", "Re: (no subject)", "Fwd: hi", "Re: ???"])
def test_generic_or_empty_subjects_never_join_by_subject(subject: str) -> None:
    index = SubjectIndex([(subject_key(subject), NOW, "thr_any")])
    assert decide(Headers(subject=subject), subjects=index).rule is ThreadRule.NEW


def test_without_a_subject_lookup_the_fallback_is_skipped() -> None:
    assert decide(Headers(subject="Re: Quarterly report")).rule is ThreadRule.NEW


def test_the_decision_carries_the_subject_key_to_store() -> None:
    decision = decide(Headers(subject="Fwd: [ops] Disk FULL on db1"))
    assert decision.subject_key == "disk full on db1"


def test_generic_subject_detection() -> None:
    assert is_generic_subject("") and is_generic_subject("hi") and is_generic_subject("thanks")
    assert not is_generic_subject("disk full on db1")


def test_a_parsed_reply_threads_onto_its_parent() -> None:
    parent = parse_message(b"Message-ID: <p@example.com>\nSubject: Setup\n\nhello")
    reply = parse_message(b"Message-ID: <r@example.com>\nIn-Reply-To: <p@example.com>\n"
                          b"References: <p@example.com>\nSubject: Re: Setup\n\nthanks")
    assert parent.message_id is not None
    decision = decide_thread(reply, received_at=NOW, thread_of={parent.message_id: "thr_setup"})
    assert (decision.thread_id, decision.rule) == ("thr_setup", ThreadRule.REFERENCES)


def test_the_default_new_thread_id_is_a_thread_identifier() -> None:
    decision = decide_thread(Headers(), received_at=NOW, thread_of={})
    assert decision.thread_id.startswith("thr_")
