#!/usr/bin/env python3
"""Fake backend for the moderato live dashboard (src/ops/dashboard.html).

Serves the page at / and FAKE data at /api/state and /events, following the exact contract
that the Rust server implements. Use it to develop and eyeball the page without Kafka:

    python3 scripts/fake-dashboard-server.py --port 8765            # serve mode
    python3 scripts/fake-dashboard-server.py --mode monitor          # no text, no lag, 2 versions
    python3 scripts/fake-dashboard-server.py --no-drift --reload-failures 2

Contract (see dashboard.html for how each field is shown):
  GET /api/state  -> one JSON object (polled every 2 s)
     mode, instance, started_at, now, model{name,version,sha256,loaded_at}, models_seen{version:n},
     heads[], totals{consumed,labelled,dead_letters,flagged}, throughput (labelled/s, last 10 s),
     dead_letter_rate (/s, last 60 s), dead_letters_by_reason{code:n}, lag{"topic/part":n},
     lag_total, assigned_partitions[], windows{"1m"|"5m"|"15m": {total, rates{head:r}}},
     series{t[], total[], dead[], flagged{head:[]}} (10 s buckets, oldest first, <= 90 points),
     languages{ar|latin|other: {total, flagged}}, stance{target: {FAVOR,AGAINST,NONE}},
     drift[{head,rate,baseline,sigma,z,alert}], reload_failures
  GET /events     -> text/event-stream; `event: comment` + `data: {id,text,lang,labels,scores,
     stance{target,label,p}|null, dead: null|reason, partition, offset, ts, model_version}`

Python 3 standard library only. The page is re-read on every request, so edits show on reload.
"""

import argparse
import json
import math
import random
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "src" / "serve" / "dashboard.html"

HEADS = ["hate", "insult", "obscene", "offensive"]
BASE_RATES = {"hate": 0.021, "insult": 0.052, "obscene": 0.013, "offensive": 0.118}
BUCKET = 10  # seconds per series bucket
SERIES_POINTS = 90
VERSION = "2026.11.24"
OLD_VERSION = "2026.11.17"
SHA = "ab12f0c93e5d7a41b8e2c6d09f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a"
TARGETS = ["Hillary Clinton", "Covid Vaccine", "Feminist Movement", "Climate Change", "Atheism"]
DEAD_REASONS = {"not_json": 0.55, "too_large": 0.2, "not_utf8": 0.1, "empty_text": 0.1, "no_text": 0.05}

# (text, lang, flagged heads, stance target or None). Mild, realistic reader comments.
COMMENTS = [
    ("Great article, thanks for the balanced reporting on the budget vote.", "latin", [], None),
    ("Does anyone know when the new metro line actually opens? The article doesn't say.", "latin", [], None),
    ("You are a complete idiot if you believe a word of this.", "latin", ["insult", "offensive"], None),
    ("The vaccine saved my grandmother's life. Get your shot, people.", "latin", [], ("Covid Vaccine", "FAVOR")),
    ("No way I'm letting them inject that experimental junk into my kids.", "latin", [], ("Covid Vaccine", "AGAINST")),
    ("Shut up, nobody asked for your stupid opinion.", "latin", ["insult", "offensive"], None),
    ("This damn council can't fix a single pothole, what a bloody joke.", "latin", ["obscene", "offensive"], None),
    ("Hillary would have handled this crisis far better, honestly.", "latin", [], ("Hillary Clinton", "FAVOR")),
    ("Lock her up. Crooked as they come.", "latin", ["offensive"], ("Hillary Clinton", "AGAINST")),
    ("People like you should be kicked out of this country, you don't belong here.", "latin", ["hate", "offensive"], None),
    ("Equal pay for equal work shouldn't even be a debate in 2026.", "latin", [], ("Feminist Movement", "FAVOR")),
    ("Interesting data, but the chart in paragraph 3 has the axes swapped.", "latin", [], None),
    ("What a pathetic excuse for journalism. Fire the editor.", "latin", ["insult"], None),
    ("Summers are getting hotter every year here; we need to act on emissions now.", "latin", [], ("Climate Change", "FAVOR")),
    ("Climate alarmism again. The weather has always changed.", "latin", [], ("Climate Change", "AGAINST")),
    ("lol this comment section is a dumpster fire", "latin", ["offensive"], None),
    ("I respectfully disagree with the author on the tax section, see the IMF numbers.", "latin", [], None),
    ("Go to hell, you and your whole rotten party.", "latin", ["offensive", "insult"], None),
    ("Bonjour, est-ce que l'article existe en français ?", "latin", [], None),
    ("من المعلوم أن سياسة فرق تسد يطبقها المستعمر لتمزيق الأمة الواحدة وتقسيم سايكس بيكو أكبر شاهد", "ar", [], None),
    ("مقال رائع، شكرا على التغطية الموضوعية للانتخابات", "ar", [], None),
    ("يا غبي، هل قرأت المقال أصلا قبل أن تعلق؟", "ar", ["insult", "offensive"], None),
    ("كلام فارغ من صحفي فاشل لا يعرف شيئا", "ar", ["insult"], None),
    ("اللقاح آمن وفعال، أخذت الجرعة الثالثة ولم يحدث شيء", "ar", [], ("Covid Vaccine", "FAVOR")),
    ("لن أعطي أطفالي لقاح Pfizer أبدا، 100% مؤامرة", "ar", [], ("Covid Vaccine", "AGAINST")),
    ("الله يلعنكم جميعا يا حرامية", "ar", ["offensive", "obscene"], None),
    ("هؤلاء الناس ليسوا بشرا، يجب طردهم من البلد", "ar", ["hate", "offensive"], None),
    ("متى سيتم افتتاح الطريق السريع الجديد في ولاية وهران؟", "ar", [], None),
    ("حقوق المرأة في العمل والتعليم ليست منة من أحد", "ar", [], ("Feminist Movement", "FAVOR")),
    ("أنت حمار ولا تفهم شيئا في السياسة", "ar", ["insult", "offensive"], None),
    ("الجو هذا الصيف لا يطاق، التغير المناخي حقيقي يا جماعة", "ar", [], ("Climate Change", "FAVOR")),
    ("تحليل ممتاز، لكن الأرقام في الفقرة الثانية تحتاج إلى مصدر", "ar", [], None),
    ("شكرا للكاتب 👏 تقرير مهم جدا", "ar", [], None),
    ("Привет из Москвы, интересная статья", "other", [], None),
]


def now():
    return time.time()


class Sim:
    """Deterministic-per-bucket traffic, so history does not change between polls."""

    def __init__(self, mode, drift, reload_failures):
        self.mode = mode
        self.drift = drift
        self.reload_failures = reload_failures
        self.started = now() - 25 * 60  # pretend we have been up 25 minutes
        self.drift_from = now() - 4 * 60  # offensive rate jumps for the last 4 minutes
        self.instance = f"{socket.gethostname()[:12]}-{random.randint(1000, 9999)}"

    def bucket(self, b):
        """Counts of the 10-second bucket starting at b*BUCKET: (total, dead, {head: flagged})."""
        rnd = random.Random(b * 7919)
        ts = b * BUCKET
        total = int(BUCKET * (780 + 140 * math.sin(ts / 170.0) + 60 * math.sin(ts / 41.0)) + rnd.randint(-300, 300))
        dead = rnd.choice([0, 0, 0, 1, 1, 2, 3]) + (14 if rnd.random() < 0.03 else 0)
        flagged = {}
        for h in HEADS:
            r = BASE_RATES[h]
            if self.drift and h == "offensive" and ts >= self.drift_from:
                r = 0.29
            flagged[h] = max(0, int(total * r * (1 + rnd.uniform(-0.25, 0.25))))
        return total, dead, flagged

    def state(self):
        t = now()
        cur = int(t // BUCKET)
        first = int(self.started // BUCKET)
        frac = (t - cur * BUCKET) / BUCKET
        buckets = {}
        totals = {"labelled": 0, "dead": 0, "flagged": 0}
        for b in range(first, cur + 1):
            tot, dead, fl = self.bucket(b)
            if b == cur:  # the current bucket is still filling
                tot, dead = int(tot * frac), int(dead * frac)
                fl = {h: int(v * frac) for h, v in fl.items()}
            buckets[b] = (tot, dead, fl)
            totals["labelled"] += tot
            totals["dead"] += dead
            # "any head flagged" share is roughly the largest head plus a bit
            totals["flagged"] += int(max(fl.values()) * 1.3)

        done = [b for b in range(cur - SERIES_POINTS, cur) if b >= first]
        series = {
            "t": [b * BUCKET for b in done],
            "total": [buckets[b][0] for b in done],
            "dead": [buckets[b][1] for b in done],
            "flagged": {h: [buckets[b][2][h] for b in done] for h in HEADS},
        }

        def window(n):
            bs = done[-n:]
            tot = sum(buckets[b][0] for b in bs)
            return {"total": tot,
                    "rates": {h: (sum(buckets[b][2][h] for b in bs) / tot if tot else 0.0) for h in HEADS}}

        windows = {"1m": window(6), "5m": window(30), "15m": window(90)}
        last = buckets[cur - 1] if cur - 1 in buckets else (0, 0, {})
        dead_60 = sum(buckets[b][1] for b in done[-6:])
        labelled = totals["labelled"]
        dead_total = totals["dead"]
        reasons, left = {}, dead_total
        for i, (code, share) in enumerate(DEAD_REASONS.items()):
            n = left if i == len(DEAD_REASONS) - 1 else int(dead_total * share)
            reasons[code] = n
            left -= n

        monitor = self.mode == "monitor"
        lag = {} if monitor else {
            f"comments/{p}": max(0, int(30 * math.sin(t / 13.0 + p * 2) + random.randint(-5, 20)))
            for p in range(3)
        }
        lang_share = {"ar": (0.44, 0.21), "latin": (0.545, 0.17), "other": (0.015, 0.04)}
        languages = {k: {"total": int(labelled * s), "flagged": int(labelled * s * f)}
                     for k, (s, f) in lang_share.items()}
        stance_mix = [(0.21, 0.55, 0.24), (0.38, 0.41, 0.21), (0.47, 0.22, 0.31), (0.52, 0.18, 0.30),
                      (0.12, 0.35, 0.53)]
        stance = {}
        for i, (target, mix) in enumerate(zip(TARGETS, stance_mix)):
            n = labelled * (0.004 / (i + 1))
            stance[target] = {"FAVOR": int(n * mix[0]), "AGAINST": int(n * mix[1]), "NONE": int(n * mix[2])}

        drift = []
        if self.drift:
            r1 = windows["1m"]["rates"]
            z = (r1["offensive"] - 0.12) / 0.025
            drift.append({"head": "offensive", "rate": round(r1["offensive"], 4), "baseline": 0.12,
                          "sigma": 0.025, "z": round(z, 2), "alert": z > 4})
            zh = (r1["hate"] - 0.02) / 0.006
            drift.append({"head": "hate", "rate": round(r1["hate"], 4), "baseline": 0.02,
                          "sigma": 0.006, "z": round(zh, 2), "alert": abs(zh) > 4})

        models_seen = {VERSION: labelled}
        if monitor:
            models_seen = {VERSION: int(labelled * 0.93), OLD_VERSION: labelled - int(labelled * 0.93)}
        return {
            "mode": self.mode,
            "instance": self.instance,
            "started_at": self.started,
            "now": t,
            "model": {"name": "default", "version": VERSION, "sha256": SHA, "loaded_at": self.started + 60},
            "models_seen": models_seen,
            "heads": HEADS,
            "totals": {"consumed": labelled + dead_total + (0 if monitor else sum(lag.values())),
                       "labelled": labelled, "dead_letters": dead_total, "flagged": totals["flagged"]},
            "throughput": round(last[0] / BUCKET, 1),
            "dead_letter_rate": round(dead_60 / 60, 3),
            "dead_letters_by_reason": reasons,
            "lag": lag,
            "lag_total": sum(lag.values()),
            "assigned_partitions": [] if monitor else [0, 1, 2],
            "windows": windows,
            "series": series,
            "languages": languages,
            "stance": stance,
            "drift": drift,
            "reload_failures": self.reload_failures,
        }


class Feed:
    """Makes one fake labelled comment (or dead letter) at a time."""

    def __init__(self, mode):
        self.mode = mode
        self.n = 0
        self.offsets = [random.randint(10_000, 90_000) for _ in range(3)]

    def next(self):
        self.n += 1
        p = random.randrange(3)
        self.offsets[p] += random.randint(1, 900)
        ev = {"id": f"c-{self.n}", "partition": p, "offset": self.offsets[p], "ts": round(now(), 3),
              "model_version": VERSION if self.mode == "serve" or random.random() < 0.9 else OLD_VERSION}
        if random.random() < 0.06:
            reason = random.choices(list(DEAD_REASONS), weights=list(DEAD_REASONS.values()))[0]
            ev.update(text=None, lang=None, labels=[], scores={}, stance=None, dead=reason)
            return ev
        text, lang, labels, stance = random.choice(COMMENTS)
        scores = {h: round(random.uniform(0.55, 0.99) if h in labels else random.uniform(0.005, 0.38), 3)
                  for h in HEADS}
        ev.update(
            text=None if self.mode == "monitor" else text[:280],
            lang=lang,
            labels=sorted(labels, key=lambda h: -scores[h]),
            scores=scores,
            stance={"target": stance[0], "label": stance[1], "p": round(random.uniform(0.52, 0.95), 2)}
            if stance else None,
            dead=None,
        )
        return ev


class Handler(BaseHTTPRequestHandler):
    sim: Sim = None
    mode = "serve"
    interval = 0.3

    def log_message(self, fmt, *args):  # quiet: one line per request is too chatty for SSE
        pass

    def send(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.send(200, "text/html; charset=utf-8", PAGE.read_bytes())
        elif path == "/api/state":
            self.send(200, "application/json", json.dumps(self.sim.state(), ensure_ascii=False).encode())
        elif path == "/events":
            self.events()
        else:
            self.send(404, "text/plain", b"not found\n")

    def events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "keep-alive")
        self.end_headers()
        feed = Feed(self.mode)
        try:
            self.wfile.write(b"retry: 2000\n\n")
            while True:
                data = json.dumps(feed.next(), ensure_ascii=False)
                self.wfile.write(f"event: comment\ndata: {data}\n\n".encode())
                self.wfile.flush()
                time.sleep(self.interval * random.uniform(0.5, 1.5))
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the browser went away


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--mode", choices=["serve", "monitor"], default="serve")
    ap.add_argument("--no-drift", action="store_true", help="no drift alert (drift: [])")
    ap.add_argument("--reload-failures", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.3, help="mean seconds between SSE events")
    a = ap.parse_args()
    Handler.sim = Sim(a.mode, not a.no_drift, a.reload_failures)
    Handler.mode = a.mode
    Handler.interval = a.interval
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.daemon_threads = True
    print(f"fake moderato dashboard on http://{a.host}:{a.port}/ ({a.mode}; page {PAGE})", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
