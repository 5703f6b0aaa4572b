"""Spam and phishing signals for one inbound message (SPEC §5).

A pure function over what is already known: the parsed From field, the recipient's domain, the
body text and the AuthResults. It never looks anything up. Only a DMARC failure whose applied
policy is `reject` quarantines (SPEC §5: such a message "is not delivered as normal mail");
every other signal is information for the reader and for later filtering.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from litemx.mailauth.dmarc import organizational_domain
from litemx.mailauth.headers import FromHeader, author_domain
from litemx.mailauth.results import AuthResults

#: SpamAssassin's Generic Test for Unsolicited Bulk Email: any filter must flag it.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

_ADDRESS = re.compile(r"[A-Za-z0-9._%+'-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_ANGLE_ADDR = re.compile(r"<[^<>]*>")
_MIN_LOOKALIKE_LABEL = 4  # shorter labels are one edit away from too many real names

# Latin look-alikes that render (nearly) identically: Cyrillic and Greek letters, digits, and
# letter pairs. A small hand-picked table in the spirit of Unicode TR39's confusables.
_CONFUSABLE_CHARS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ɡ": "g", "ο": "o", "α": "a", "ν": "v", "κ": "k",
    "ρ": "p", "τ": "t", "ι": "i", "υ": "u", "ε": "e", "0": "o", "1": "l", "|": "l", "5": "s",
})
_CONFUSABLE_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


@dataclass(frozen=True)
class Signal:
    """One finding: a stable machine code and a sentence for people."""

    code: str
    reason: str


@dataclass(frozen=True)
class SignalReport:
    """All findings for a message, and whether it must be held back from the inbox."""

    signals: tuple[Signal, ...]
    quarantine: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: {"signals": [{"code", "reason"}...], "quarantine": bool}.

        Raises:
            Nothing.
        """
        return {"signals": [asdict(s) for s in self.signals], "quarantine": self.quarantine}


def assess(author: FromHeader, recipient_domain: str, body_text: str, auth: AuthResults) -> SignalReport:
    """Every signal for the message, and `quarantine` when DMARC fails with an applied reject.

    Raises:
        Nothing.
    """
    own = author_domain(f"x@{recipient_domain}") or recipient_domain.lower()
    found = [
        *_auth_signals(auth),
        *_from_signals(author),
        *_display_name_spoof(author, own),
        *_lookalikes(author, own),
        *_gtube(body_text),
    ]
    return SignalReport(tuple(found), _quarantine(auth))


def _quarantine(auth: AuthResults) -> bool:
    # RFC 7489 §6.3 p=reject, after §6.6.4 pct sampling (the disposition), on a DMARC fail.
    return auth.dmarc.result == "fail" and auth.dmarc.disposition == "reject"


# --- authentication ----------------------------------------------------------------------------


def _auth_signals(auth: AuthResults) -> list[Signal]:
    return [*_spf_signals(auth), *_dkim_signals(auth), *_dmarc_signals(auth), *_arc_signals(auth)]


def _spf_signals(auth: AuthResults) -> list[Signal]:
    spf = auth.spf
    if spf.result in ("fail", "softfail"):
        # RFC 7208 §2.6.4/§2.6.5: the domain says this client is not (or probably not) allowed.
        return [Signal(f"spf_{spf.result}", f"SPF {spf.result} for {spf.domain} from {spf.client_ip}")]
    return []


def _dkim_signals(auth: AuthResults) -> list[Signal]:
    broken = [sig for sig in auth.dkim if sig.result in ("fail", "permerror", "policy")]
    if not broken or any(sig.result == "pass" for sig in auth.dkim):
        return []  # a broken signature next to a valid one is routine (lists, forwarders)
    detail = "; ".join(f"d={sig.domain or '?'}: {sig.reason or sig.result}" for sig in broken)
    return [Signal("dkim_fail", f"no valid DKIM signature ({detail})")]


def _dmarc_signals(auth: AuthResults) -> list[Signal]:
    dmarc = auth.dmarc
    if dmarc.result != "fail":
        return []
    reason = f"DMARC fail for {dmarc.from_domain} (policy {dmarc.policy}, applied {dmarc.disposition})"
    return [Signal("dmarc_fail", reason)]


def _arc_signals(auth: AuthResults) -> list[Signal]:
    if auth.arc.result != "fail":
        return []
    return [Signal("arc_fail", f"ARC chain broken: {auth.arc.reason}")]


def _from_signals(author: FromHeader) -> list[Signal]:
    # RFC 5322 §3.6: exactly one From field is required; RFC 7489 §6.6.1 needs one domain.
    if not author.domains:
        return [Signal("from_unusable", "no usable From address")]
    if len(author.domains) > 1 or author.fields > 1:
        return [Signal("from_multiple", "several From addresses: " + ", ".join(author.domains))]
    return []


# --- display-name spoofing ---------------------------------------------------------------------


def _display_name_spoof(author: FromHeader, own: str) -> list[Signal]:
    """An address at our own domain shown in the From text while the sender is elsewhere."""
    shown = [m.group(0) for m in _ADDRESS.finditer(_ANGLE_ADDR.sub(" ", author.text))]
    ours = [address for address in shown if _at_domain(author_domain(address), own)]
    elsewhere = [box.address for box in author.mailboxes if not _at_domain(box.domain, own)]
    if not ours or not elsewhere:
        return []
    reason = f"From shows {ours[0]} but the sender is {elsewhere[0]}"
    return [Signal("display_name_spoof", reason)]


def _at_domain(domain: str, own: str) -> bool:
    return domain == own or domain.endswith("." + own)


# --- look-alike domains ------------------------------------------------------------------------


def _lookalikes(author: FromHeader, own: str) -> list[Signal]:
    found = (_lookalike(domain, own) for domain in author.domains)
    return [signal for signal in found if signal is not None]


def _lookalike(domain: str, own: str) -> Signal | None:
    theirs, ours = organizational_domain(domain), organizational_domain(own)
    if theirs == ours:
        return None
    label, own_label = _first_label(theirs), _first_label(ours)
    if label == own_label:
        return None  # same name under another suffix: often the same owner, not a look-alike
    if label.startswith("xn--") and _skeleton(_unicode(label)) == _skeleton(own_label):
        return Signal("homograph_domain", f"{domain} ({_unicode(label)}) imitates {own}")
    if _skeleton(label) == _skeleton(own_label):
        return Signal("lookalike_domain", f"{domain} uses look-alike characters for {own}")
    if len(own_label) >= _MIN_LOOKALIKE_LABEL and _edit_distance(label, own_label) == 1:
        return Signal("lookalike_domain", f"{domain} is one edit away from {own}")
    return None


def _first_label(domain: str) -> str:
    return domain.split(".", 1)[0]


def _unicode(label: str) -> str:
    try:
        return label.encode("ascii").decode("idna")
    except UnicodeError:
        return label


def _skeleton(text: str) -> str:
    # NFKD then drop combining marks folds accents (é -> e); the tables fold look-alikes.
    decomposed = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = folded.translate(_CONFUSABLE_CHARS)
    for pair, single in _CONFUSABLE_PAIRS:
        folded = folded.replace(pair, single)
    return folded


def _edit_distance(left: str, right: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a swap of neighbours counts once."""
    rows = [list(range(len(right) + 1))]
    for i, a in enumerate(left, 1):
        row = [i]
        for j, b in enumerate(right, 1):
            cost = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a != b))
            if i > 1 and j > 1 and a == right[j - 2] and left[i - 2] == b:
                cost = min(cost, rows[-2][j - 2] + 1)
            row.append(cost)
        rows.append(row)
    return rows[-1][-1]


# --- content -----------------------------------------------------------------------------------


def _gtube(body_text: str) -> list[Signal]:
    if GTUBE in body_text:
        return [Signal("gtube", "body contains the GTUBE test string")]
    return []
