#!/usr/bin/env python3
"""Deterministic generator of realistic role-inbox mail for the benchmarks.

    python bench/corpus.py --count 100000 --out /tmp/litemx-bench/corpus-100000 [--seed 42]

Writes, under --out:
  maildir/{cur,new,tmp}/   one file per message (LF line endings), for `notmuch new`
  eml/NNNNNNN.eml          the same bytes (hard links to the maildir files when possible)
  index.tsv                file name, envelope sender, recipient, ISO date — in date order
  manifest.json            count, seed, date span, mailboxes, and the fixed query set
                           (rare word, common word, phrase, sender, date range, combined)
                           chosen from the corpus' own statistics

What it looks like: conversations (1..8 messages) with Message-ID / In-Reply-To / References
and "Re:" subjects; senders drawn Zipf-wise from a few hundred customers on several domains,
some with non-ASCII display names; mail to support@, billing@ and hello@ of bench.example;
bodies of Zipf-distributed words (a few hundred everyday words, then a long synthetic tail),
stock sentences (so phrases occur), quoted text in replies; ~70% multipart/alternative with an
HTML part, ~8% with a base64 attachment (PDF, CSV or PNG-like bytes). Same --seed, same bytes.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import accumulate
from pathlib import Path

DOMAIN = "bench.example"
MAILBOX_WEIGHTS = (("support", 0.6), ("billing", 0.25), ("hello", 0.15))
DEFAULT_START = "2025-01-01"
SPAN_DAYS = 300  # under a year, so a server's metadata retention (365 days) keeps all of it
ZIPF_S = 1.07
VOCAB_SIZE = 30000

EVERYDAY = """the to and of a i in you for is it that on my we this with your be have are not can
please order account payment invoice refund delivery thanks hi hello team help could would will
was as but at from if our just me know any there so all get has do when what time card password
email login number issue problem shipping package received sent still yet week today tomorrow
price plan subscription upgrade cancel billing charge charged receipt address update change new
product item size color return exchange label tracking status working error message app website
page link click button download file attached attachment report export data customer support
service reply response question answer information details date month year again soon asap
urgent sorry appreciate best regards kind cheers morning afternoon evening team manager office
store shop cart checkout coupon discount code trial free monthly annual renew renewal expired
expiry access reset verify verification phone mobile desktop browser chrome firefox safari
windows mac iphone android version latest bug crash slow fast fix fixed resolved open ticket
case reference confirm confirmed confirmation booking appointment schedule meeting call demo
quote proposal contract agreement terms policy privacy security two factor code sms backup
team colleague user users admin seat seats license invoice vat tax company legal name business
shipping warehouse courier parcel box damaged missing wrong broken replacement warranty""".split()

STOCK = [
    "we were charged twice this month",
    "the tracking number does not work",
    "could you reset my password please",
    "i never received the confirmation email",
    "please cancel my subscription at the end of the term",
    "the invoice shows the wrong company name",
    "my package arrived damaged and the box was open",
    "can you send me a copy of the receipt",
    "the discount code was not applied at checkout",
    "i would like to upgrade to the annual plan",
    "two factor authentication codes are not arriving",
    "the export file is empty when i download it",
]

TOPICS = [
    "Order #{n} not delivered", "Invoice {n} question", "Password reset not working", "Refund for order {n}",
    "Question about my subscription", "Damaged parcel {n}", "Upgrade to annual plan", "Wrong VAT number on invoice",
    "Cannot log in", "Partnership enquiry", "Demo request for our team", "Charged twice in {m}",
    "Tracking number {n}", "Seat licenses for {c}", "Export is empty", "Two factor codes not arriving",
    "Cancel my account", "Address change for order {n}", "Coupon code {n} rejected", "Hello from {c}",
]

FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj",
         "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara", "zoe", "jose", "bjorn", "chloe"]
DISPLAY = {"jose": "José", "bjorn": "Björn", "zoe": "Zoë", "chloe": "Chloé"}
LAST = ["smith", "jones", "garcia", "muller", "rossi", "dubois", "tanaka", "kowalski", "silva", "nguyen",
        "schmidt", "jensen", "oconnor", "ivanova", "haddad", "kim"]
SENDER_DOMAINS = ["gmail.example", "outlook.example", "acme-corp.example", "globex.example", "initech.example",
                  "umbrella.example", "hooli.example", "fastmail.example", "proton.example", "yahoo.example"]
ATTACHMENTS = [("application/pdf", "invoice-{n}.pdf"), ("text/csv", "export-{n}.csv"),
               ("image/png", "screenshot-{n}.png")]
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "do", "fa", "gu", "ho", "ji", "ke", "la",
             "mo", "nu", "pa", "re", "si", "to", "vu", "wa", "xe", "yo", "za", "bri", "cla", "dre", "fli", "gro",
             "pla", "sto", "tri", "ven", "mar", "tel", "dor", "quin", "sha", "ther", "ul", "ix", "on", "ar"]
CHUNK = 64 * 1024


@dataclass
class Message:
    n: int
    date: datetime
    mail_from: str
    rcpt: str
    raw: bytes = b""
    words: set[str] = field(default_factory=set)


class Generator:
    def __init__(self, seed: int, start: datetime):
        self.rng = random.Random(seed)
        self.seed = seed
        self.start = start
        self.vocab = self._vocabulary()
        self.cum = list(accumulate(1 / (r + 1) ** ZIPF_S for r in range(len(self.vocab))))
        self.senders = self._senders(400)
        self.sender_cum = list(accumulate(1 / (r + 1) ** 0.9 for r in range(len(self.senders))))
        self.df: Counter[str] = Counter()

    def _vocabulary(self) -> list[str]:
        seen: set[str] = set()
        vocab: list[str] = []
        for word in EVERYDAY:
            if word not in seen:
                seen.add(word)
                vocab.append(word)
        rng = random.Random(self.seed * 7919 + 1)
        while len(vocab) < VOCAB_SIZE:
            word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
            if word not in seen:
                seen.add(word)
                vocab.append(word)
        return vocab

    def _senders(self, count: int) -> list[tuple[str, str]]:
        rng, out, seen = self.rng, [], set()
        while len(out) < count:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            addr = f"{first}.{last}@{rng.choice(SENDER_DOMAINS)}"
            if addr not in seen:
                seen.add(addr)
                out.append((f"{DISPLAY.get(first, first.title())} {last.title()}", addr))
        return out

    def words(self, k: int) -> list[str]:
        return self.rng.choices(self.vocab, cum_weights=self.cum, k=k)

    def paragraph(self, used: set[str]) -> str:
        words = self.words(self.rng.randint(20, 70))
        used.update(words)
        words[0] = words[0].capitalize()
        lines, line, width = [], [], 0
        for w in words:
            line.append(w)
            width += len(w) + 1
            if width > 66:
                lines.append(" ".join(line))
                line, width = [], 0
        if line:
            lines.append(" ".join(line))
        return "\n".join(lines) + "."

    def sender(self) -> tuple[str, str]:
        i = bisect.bisect(self.sender_cum, self.rng.random() * self.sender_cum[-1])
        return self.senders[min(i, len(self.senders) - 1)]


def _mailbox(rng: random.Random) -> str:
    x, acc = rng.random(), 0.0
    for local, weight in MAILBOX_WEIGHTS:
        acc += weight
        if x < acc:
            return f"{local}@{DOMAIN}"
    return f"support@{DOMAIN}"


def _thread_length(rng: random.Random) -> int:
    return rng.choices([1, 2, 3, 4, 5, 6, 7, 8], weights=[40, 25, 15, 10, 4, 3, 2, 1])[0]


def _header_name(name: str) -> str:
    if name.isascii():
        return f'"{name}"'
    return "=?utf-8?b?" + base64.b64encode(name.encode()).decode() + "?="


def plan_threads(gen: Generator, count: int) -> list[tuple[datetime, int, int, dict]]:
    """(date, thread number, position, thread info) for `count` messages, in date order."""
    rng, events, t = gen.rng, [], 0
    while len(events) < count:
        length = _thread_length(rng)
        start = gen.start + timedelta(seconds=rng.randrange(SPAN_DAYS * 86400))
        subject = rng.choice(TOPICS).format(n=rng.randint(10000, 99999), m=rng.choice(["March", "May", "June"]),
                                            c=rng.choice(["Acme", "Globex", "Initech", "Hooli"]))
        info = {"subject": subject, "mailbox": _mailbox(rng), "customer": gen.sender(),
                "colleague": gen.sender(), "ids": []}
        when = start
        for pos in range(length):
            events.append((when, t, pos, info))
            when += timedelta(seconds=int(rng.expovariate(1 / (6 * 3600))) + 60)
        t += 1
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return events[:count]


def build(gen: Generator, n: int, when: datetime, thread: int, pos: int, info: dict) -> Message:
    rng = gen.rng
    name, addr = info["customer"] if pos % 3 != 2 else info["colleague"]
    msgid = f"<t{thread}.m{pos}.{gen.seed}@{addr.split('@')[1]}>"
    used: set[str] = set()
    paragraphs = [gen.paragraph(used) for _ in range(rng.choices([1, 2, 3, 4], weights=[3, 4, 2, 1])[0])]
    if rng.random() < 0.25:
        stock = rng.choice(STOCK)
        used.update(stock.split())
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), stock.capitalize() + ".")
    first = name.split()[0]
    text = f"Hi team,\n\n" + "\n\n".join(paragraphs) + f"\n\nBest,\n{first}\n"
    if pos and info["ids"]:
        quoted = "\n".join("> " + line for line in info.get("last_para", "").splitlines())
        text += f"\nOn {format_datetime(when - timedelta(hours=2))} someone wrote:\n{quoted}\n"
    info["last_para"] = paragraphs[0]
    subject = info["subject"] if pos == 0 else "Re: " + info["subject"]
    headers = [f"From: {_header_name(name)} <{addr}>", f"To: {info['mailbox']}",
               f"Subject: {subject}", f"Date: {format_datetime(when)}", f"Message-ID: {msgid}"]
    if pos % 3 == 2:
        headers.append(f"Cc: {_header_name(info['customer'][0])} <{info['customer'][1]}>")
    if info["ids"]:
        headers.append(f"In-Reply-To: {info['ids'][-1]}")
        headers.append("References: " + " ".join(info["ids"][-10:]))
    headers.append("MIME-Version: 1.0")
    info["ids"].append(msgid)
    body = _body(gen, n, text, paragraphs)
    raw = ("\n".join(headers) + "\n" + body).encode("utf-8")
    return Message(n, when, addr, info["mailbox"], raw, used)


def _body(gen: Generator, n: int, text: str, paragraphs: list[str]) -> str:
    rng = gen.rng
    enc = "8bit" if not text.isascii() else "7bit"
    text_part = f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {enc}\n\n{text}"
    if rng.random() < 0.7:
        html = "<html><body>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</body></html>\n"
        b1 = f"=_alt_{n}"
        alt = (f"Content-Type: multipart/alternative; boundary=\"{b1}\"\n\n--{b1}\n{text_part}\n--{b1}\n"
               f"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: {enc}\n\n{html}\n--{b1}--\n")
    else:
        alt = text_part
    if rng.random() >= 0.08:
        return alt
    ctype, fname = rng.choice(ATTACHMENTS)
    data = rng.randbytes(rng.randint(2000, 30000))
    b2 = f"=_mix_{n}"
    return (f"Content-Type: multipart/mixed; boundary=\"{b2}\"\n\n--{b2}\n{alt}\n--{b2}\n"
            f"Content-Type: {ctype}; name=\"{fname.format(n=n)}\"\nContent-Transfer-Encoding: base64\n"
            f"Content-Disposition: attachment; filename=\"{fname.format(n=n)}\"\n\n"
            f"{base64.encodebytes(data).decode()}\n--{b2}--\n")


def generate(count: int, seed: int, start: str = DEFAULT_START):  # type: ignore[no-untyped-def]
    """Yield `count` Message objects in date order (deterministic for a seed and start day)."""
    gen = Generator(seed, datetime.fromisoformat(start).replace(tzinfo=UTC))
    for n, (when, thread, pos, info) in enumerate(plan_threads(gen, count)):
        msg = build(gen, n, when, thread, pos, info)
        gen.df.update(msg.words)
        yield gen, msg


def choose_queries(gen: Generator, count: int, senders: Counter[str], months: Counter[str]) -> dict:
    """The fixed query set, picked from the corpus' own statistics (deterministic)."""
    synthetic = set(gen.vocab[len(set(EVERYDAY)):])
    rare = next((w for w in gen.vocab if w in synthetic and 2 <= gen.df[w] <= max(3, count // 10000)),
                min(synthetic, key=lambda w: (abs(gen.df[w] - 3), w)))
    common = min((w for w in EVERYDAY if len(w) > 4), key=lambda w: (abs(gen.df[w] - 0.25 * count), w))
    sender = sorted(senders.items(), key=lambda kv: (abs(kv[1] - 0.01 * count), kv[0]))[0][0]
    top_sender = senders.most_common(1)[0][0]
    month = sorted(months)[len(months) // 2]
    year, mon = int(month[:4]), int(month[5:])
    nxt = f"{year + (mon == 12)}-{(mon % 12) + 1:02d}-01"
    end = datetime.strptime(max(months) + "-01", "%Y-%m-%d") - timedelta(days=80)
    after = end.strftime("%Y-%m-01")
    return {
        "rare_word": {"word": rare, "df": gen.df[rare]},
        "common_word": {"word": common, "df": gen.df[common]},
        "phrase": {"phrase": "charged twice"},
        "from": {"address": sender, "messages": senders[sender]},
        "date_range": {"after": f"{month}-01", "before": nxt},
        "combined": {"from": top_sender, "word": "invoice", "after": after},
    }


def write(count: int, out: Path, seed: int, maildir: bool = True, eml: bool = True,
          start: str = DEFAULT_START) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cur = out / "maildir" / "cur"
    for sub in ("cur", "new", "tmp"):
        (out / "maildir" / sub).mkdir(parents=True, exist_ok=True)
    emldir = out / "eml"
    emldir.mkdir(parents=True, exist_ok=True)
    senders: Counter[str] = Counter()
    months: Counter[str] = Counter()
    total_bytes, attachments = 0, 0
    started = time.monotonic()
    gen = None
    batch: list[tuple[Path, Path | None, bytes]] = []
    # File creation dominates; the generator is sequential (one seeded RNG), the writes are not.
    with (out / "index.tsv").open("w") as index, ThreadPoolExecutor(4) as pool:
        pending = []
        for gen, msg in generate(count, seed, start):
            name = f"{msg.n:07d}.eml"
            md_name = f"{int(msg.date.timestamp())}.{msg.n:07d}.bench:2,S"
            target = cur / md_name if maildir else emldir / name
            batch.append((target, emldir / name if maildir and eml else None, msg.raw))
            if len(batch) >= 500:
                pending.append(pool.submit(_write_batch, batch))
                batch = []
            index.write(f"{name}\t{md_name if maildir else ''}\t{msg.mail_from}\t{msg.rcpt}\t{msg.date.isoformat()}\n")
            senders[msg.mail_from] += 1
            months[msg.date.strftime("%Y-%m")] += 1
            total_bytes += len(msg.raw)
            attachments += b"Content-Disposition: attachment" in msg.raw
        pending.append(pool.submit(_write_batch, batch))
        for future in pending:
            future.result()
    assert gen is not None
    elapsed = time.monotonic() - started
    manifest = {
        "count": count, "seed": seed, "bytes": total_bytes, "attachments": attachments,
        "start": start, "span_days": SPAN_DAYS, "domain": DOMAIN,
        "mailboxes": [f"{m}@{DOMAIN}" for m, _ in MAILBOX_WEIGHTS], "senders": len(senders),
        "generated_in_s": round(elapsed, 2), "queries": choose_queries(gen, count, senders, months),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _write_batch(batch: list[tuple[Path, Path | None, bytes]]) -> None:
    for target, link, raw in batch:
        with open(target, "wb") as fh:
            fh.write(raw)
        if link is not None:
            try:
                os.link(target, link)
            except OSError:
                link.write_bytes(raw)


def recent_start(today: datetime | None = None) -> str:
    """A start day such that the whole span ends before today (the first of a month, so it
    changes once a month): benchmarks that run a server use it, because a server applies
    retention to mail dated long ago."""
    day = (today or datetime.now(UTC)) - timedelta(days=SPAN_DAYS + 35)
    return day.strftime("%Y-%m-01")


def ensure(count: int, out: Path, seed: int = 42, start: str = DEFAULT_START) -> dict:
    """Reuse a corpus already written with the same count, seed and start, else write it."""
    manifest = out / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("count") == count and data.get("seed") == seed and data.get("start") == start:
            return data
    return write(count, out, seed, start=start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="messages (10k .. 1M)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", default=DEFAULT_START,
                        help=f"first day YYYY-MM-DD (the span is {SPAN_DAYS} days; 'recent' = ends about a month ago)")
    parser.add_argument("--no-eml", action="store_true", help="maildir only")
    args = parser.parse_args(argv)
    if args.start == "recent":
        args.start = recent_start()
    if not 1 <= args.count <= 2_000_000:
        parser.error("--count must be between 1 and 2,000,000")
    m = write(args.count, args.out, args.seed, eml=not args.no_eml, start=args.start)
    print(f"corpus: {m['count']:,} messages, {m['bytes'] / 2**20:,.1f} MiB, {m['attachments']:,} with attachments, "
          f"{m['senders']} senders, written in {m['generated_in_s']} s "
          f"({m['count'] / max(m['generated_in_s'], 1e-9):,.0f} msg/s) to {args.out}")
    print("queries:", json.dumps(m["queries"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
