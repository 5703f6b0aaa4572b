"""Which thread a new message joins, within one mailbox — pure, storage passed in as lookups.

Rules, first match wins (RFC 5322 §3.6.4 plus the JWZ threading idea):

1. `references`: the thread of a message named in References, newest ancestor first
   (References lists the root first and the parent last).
2. `in_reply_to`: the thread of the message named in In-Reply-To.
3. `message_id`: the thread already holding this Message-ID — a duplicate delivery, or, when
   the lookup also answers for ids that stored messages *reference*, a parent arriving after
   its reply.
4. `subject`: only for a message with no References and no In-Reply-To at all, whose
   subject carries a reply/forward marker ("Re:", "AW:", ...; see `normalise_subject`),
   whose normalised subject is not empty or generic ("hello", "question", ...), and for
   which a message with the same subject key arrived within the window (30 days). The
   reply-marker requirement keeps two customers who both write "Refund" apart, while a
   reply from a client that drops threading headers still lands in its thread.
5. `new`: a fresh thread id.

The lookups stay inside ONE mailbox: the caller binds the mailbox into them, so threads never
cross mailboxes (or accounts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from litemx.core.ids import new_id

SUBJECT_WINDOW = timedelta(days=30)
MIN_SUBJECT_KEY = 4  # shorter keys ("hi", "ok", "?") say nothing about which conversation it is
GENERIC_SUBJECTS = frozenset({
    "no subject", "(no subject)", "none", "untitled", "hi", "hello", "hey", "hello there",
    "test", "testing", "question", "questions", "help", "info", "information", "inquiry",
    "enquiry", "contact", "request", "support", "urgent", "important", "fyi", "thanks",
    "thank you", "message", "your message", "invoice", "order", "meeting", "update",
    "follow up", "follow-up", "quick question", "feedback",
})

ThreadLookup = Callable[[str], str | None] | Mapping[str, str]
SubjectLookup = Callable[[str, datetime], str | None]


class ThreadingHeaders(Protocol):
    """What threading reads from a message; `mime.ParsedMessage` satisfies it."""

    @property
    def message_id(self) -> str | None: ...
    @property
    def in_reply_to(self) -> str | None: ...
    @property
    def references(self) -> Sequence[str]: ...
    @property
    def subject(self) -> str: ...


class ThreadRule(StrEnum):
    REFERENCES = "references"
    IN_REPLY_TO = "in_reply_to"
    MESSAGE_ID = "message_id"
    SUBJECT = "subject"
    NEW = "new"


@dataclass(frozen=True)
class ThreadDecision:
    """The chosen thread, the rule that chose it and what it matched on (a msg-id or subject key).

    `subject_key` is what the caller stores for later subject lookups.
    """

    thread_id: str
    rule: ThreadRule
    matched: str | None
    subject_key: str


# Reply / forward markers stripped for the thread fallback, in any number and order:
# English Re/Fw/Fwd, German AW/WG, Scandinavian SV/VS, Dutch Antw, Polish Odp, Turkish Ynt,
# French TR, Italian RIF, Portuguese Res/Enc, Chinese 回复/答复/转发/回覆/轉寄, optionally
# numbered (Re[2]:, Re(2):, Re^2:), with ASCII or full-width colons, plus "[list]" tags.
_REPLY_MARKER = (
    r"(?:re|fwd?|aw|wg|sv|vs|antw|odp|ynt|tr|rif|res|enc|回复|答复|转发|回覆|轉寄)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]"
)
_LIST_TAG = r"\[[^\[\]]{0,64}\]"
_PREFIX = re.compile(rf"^\s*(?:{_REPLY_MARKER}|{_LIST_TAG})", re.IGNORECASE)
_REPLY_AFTER_TAGS = re.compile(rf"^\s*(?:{_LIST_TAG}\s*)*{_REPLY_MARKER}", re.IGNORECASE)


def normalise_subject(subject: str | None) -> str:
    """Subject without reply/forward prefixes or list tags, whitespace collapsed; case kept.

    The prefixes removed are listed above `_REPLY_MARKER`; they are stripped repeatedly, so
    "Re: [ops] AW: Fwd: Outage" becomes "Outage".
    """
    text = " ".join((subject or "").split())
    while True:
        stripped = _PREFIX.sub("", text, count=1).strip()
        if stripped == text:
            return text
        text = stripped


def has_reply_prefix(subject: str | None) -> bool:
    """True when the subject starts with a reply/forward marker, possibly after list tags."""
    return bool(_REPLY_AFTER_TAGS.match(subject or ""))


def subject_key(subject: str | None) -> str:
    """The case-insensitive comparison key for the subject fallback."""
    return normalise_subject(subject).casefold()


def is_generic_subject(key: str) -> bool:
    """True when a subject key is too empty or too common to identify a conversation."""
    return len(key) < MIN_SUBJECT_KEY or key in GENERIC_SUBJECTS or not any(c.isalnum() for c in key)


def candidate_ids(message: ThreadingHeaders) -> list[str]:
    """Msg-ids to look up, in rule order: References newest first, In-Reply-To, own id.

    Storage can fetch them all with one `IN (...)` query and pass the result as a mapping.
    """
    ordered = [*reversed(message.references), *([message.in_reply_to] if message.in_reply_to else [])]
    own = [message.message_id] if message.message_id else []
    return list(dict.fromkeys(i for i in [*ordered, *own] if i))


def decide_thread(
    message: ThreadingHeaders,
    *,
    received_at: datetime,
    thread_of: ThreadLookup,
    thread_by_subject: SubjectLookup | None = None,
    new_thread_id: Callable[[], str] = lambda: new_id("thr"),
    window: timedelta = SUBJECT_WINDOW,
) -> ThreadDecision:
    """Decide the thread of `message` in one mailbox (rules in the module docstring).

    `thread_of(msg_id)` answers the thread holding that Message-ID (a mapping works too);
    `thread_by_subject(key, since)` answers the thread of the newest message with that
    subject key received at or after `since`.
    """
    key = subject_key(message.subject)
    found = _by_message_ids(message, _as_callable(thread_of))
    if found is not None:
        return ThreadDecision(found[0], found[1], found[2], key)
    if thread_by_subject is not None and _subject_fallback_allowed(message, key):
        thread_id = thread_by_subject(key, received_at - window)
        if thread_id is not None:
            return ThreadDecision(thread_id, ThreadRule.SUBJECT, key, key)
    return ThreadDecision(new_thread_id(), ThreadRule.NEW, None, key)


def _as_callable(lookup: ThreadLookup) -> Callable[[str], str | None]:
    return lookup.get if isinstance(lookup, Mapping) else lookup


def _by_message_ids(
    message: ThreadingHeaders, lookup: Callable[[str], str | None]
) -> tuple[str, ThreadRule, str] | None:
    """The first referenced msg-id with a known thread, skipping the message's own id until rule 3."""
    for msg_id in reversed(message.references):
        thread_id = lookup(msg_id) if msg_id != message.message_id else None
        if thread_id is not None:
            return thread_id, ThreadRule.REFERENCES, msg_id
    for msg_id, rule in ((message.in_reply_to, ThreadRule.IN_REPLY_TO), (message.message_id, ThreadRule.MESSAGE_ID)):
        thread_id = lookup(msg_id) if msg_id else None
        if thread_id is not None and msg_id is not None:
            return thread_id, rule, msg_id
    return None


def _subject_fallback_allowed(message: ThreadingHeaders, key: str) -> bool:
    """Rule 4's guards: no threading headers at all, a reply marker, a specific subject."""
    if message.references or message.in_reply_to:
        return False
    return has_reply_prefix(message.subject) and not is_generic_subject(key)
