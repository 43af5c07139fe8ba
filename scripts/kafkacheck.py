"""What scripts/stream-check and scripts/soak share: Apache Kafka's own command-line clients
(from scripts/broker's classpath), the input comments with what each must become, a
`moderato serve` process, its /metrics, and the audit of every input offset's answers."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                      "release", "moderato")
MAX_PAYLOAD = 4096
NULL = "<NULL>"


# Comment texts written for this check (English and Arabic, benign and abusive); no data set text.
TEXTS = [
    "Thanks for the clear report, the council should publish the budget.",
    "You are an idiot and everyone here knows it.",
    "The referee was fair today, both teams played well.",
    "Shut up, nobody wants your stupid opinion.",
    "شكرا على هذا التقرير المفيد عن الانتخابات",
    "انت غبي ولا تفهم شيئا",
    "الله يحفظ البلد وأهله من كل شر",
    "Climate policy needs more public debate, not less.",
]

# Malformed payloads (one per 100 inputs, in turn) and the dead-letter reason each must get.
MALFORMED = [
    ('{"id": 1, "text": ', "not_json"),
    ('{"id": 2}', "no_text"),
    ('{"id": 3, "text": ""}', "empty_text"),
    (NULL, "no_payload"),
    ('{"id": 4, "text": "' + "x" * (MAX_PAYLOAD + 100) + '"}', "too_large"),
]


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


class Kafka:
    """Apache Kafka's command-line tools, run from the broker's classpath."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.classpath = subprocess.run(
            [os.path.join(REPO, "scripts", "broker"), "classpath"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()

    def command(self, cls, *args):
        """The command line that runs Kafka's tool class `cls` with `args`."""
        return ["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", self.classpath, cls, *args]

    def tool(self, cls, *args, stdin=None, check=True):
        out = subprocess.run(self.command(cls, *args), input=stdin, capture_output=True,
                             text=True)
        if check and out.returncode != 0:
            raise SystemExit(f"{cls} failed ({out.returncode}): {out.stderr[-2000:]}")
        return out.stdout

    def create_topic(self, name, partitions):
        self.tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", self.bootstrap,
                  "--create", "--topic", name, "--partitions", str(partitions),
                  "--replication-factor", "1")

    def produce(self, topic, lines):
        """Writes `lines` (see `input_line`) with kafka-console-producer and waits for it."""
        proc = self.producer(topic)
        proc.communicate("".join(lines))
        if proc.returncode != 0:
            raise SystemExit(f"kafka-console-producer failed ({proc.returncode})")

    def consume(self, topic, *props):
        """Every record of `topic` (read_committed), one output line each, as they are read."""
        args = ["--bootstrap-server", self.bootstrap, "--topic", topic, "--from-beginning",
                "--isolation-level", "read_committed", "--timeout-ms", "20000",
                "--property", "headers.separator=\x1f", "--property", "key.separator=\x1e"]
        for p in props:
            args += ["--property", p]
        cmd = self.command("org.apache.kafka.tools.consumer.ConsoleConsumer", *args)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, encoding="utf-8", errors="replace") as proc:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line:
                    yield line

    def producer(self, topic):
        """A kafka-console-producer reading input lines (see `input_line`) from its stdin."""
        cmd = self.command(
            "org.apache.kafka.tools.ConsoleProducer",
            "--bootstrap-server", self.bootstrap, "--topic", topic,
            "--property", "parse.key=true", "--property", "parse.headers=true",
            "--property", "headers.separator=\x1f", "--property", f"null.marker={NULL}",
            "--producer-property", "acks=all", "--producer-property", "linger.ms=5")
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                text=True, encoding="utf-8")

    def lag(self, group):
        """Total lag of `group` (None while the group has no committed offsets yet)."""
        out = self.tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                        "--bootstrap-server", self.bootstrap, "--describe", "--group", group,
                        check=False)
        lags = []
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 6 and cols[0] == group:
                lags.append(cols[5])
        if not lags or any(not l.isdigit() for l in lags):
            return None
        return sum(int(l) for l in lags)


def input_line(i):
    """Input `i` as a kafka-console-producer line (headers, key, value): one in 100 is
    malformed, one in 50 has a null header value, and the header `expect` says what it must
    become (`ok`: a labelled record; else the dead-letter reason)."""
    if i % 100 == 37:
        value, expect = MALFORMED[(i // 100) % len(MALFORMED)]
    else:
        value = json.dumps({"id": i, "text": TEXTS[i % len(TEXTS)]}, ensure_ascii=False)
        expect = "ok"
    headers = f"expect:{expect}\x1fn:{i}"
    if i % 50 == 11:
        headers += f"\x1fempty:{NULL}"
    return f"{headers}\tthread-{i % 97}\t{value}\n"


def inputs(count):
    """Inputs 0..count as producer lines."""
    return [input_line(i) for i in range(count)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metric(port, name):
    """The sum of metric `name` over its series on the /metrics of `port` (0 if unreachable)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$"
    return sum(float(v) for v in re.findall(pattern, body, re.M))


def consumed(port):
    """Messages read by the instance whose /metrics is on `port`."""
    return int(metric(port, "moderato_messages_consumed_total"))


def rss_mib(pid):
    """Resident set size of process `pid` in MiB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def serve(bootstrap, topics, group, guarantee, port, logfile, instance="check-1", extra=()):
    """Starts `moderato serve` on `topics` (input, output, dead letters) in `group`."""
    inp, out, dlq = topics
    cmd = [BINARY, "serve", "--brokers", bootstrap, "--group", group,
           "--input-topic", inp, "--output-topic", out, "--dlq-topic", dlq,
           "--guarantee", guarantee, "--instance", instance,
           "--max-payload-bytes", str(MAX_PAYLOAD), "--http", f"127.0.0.1:{port}",
           "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", *extra]
    env = dict(os.environ, RUST_LOG="info,librdkafka=warn,rdkafka=warn")
    env.pop("MODERATO_MODEL", None)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logfile, env=env)


def headers_of(field):
    out = {}
    for h in field.split("\x1f"):
        k, _, v = h.partition(":")
        out[k] = v
    return out


def audit(kafka, topics, count, expect_of_value=None):
    """Every input offset's answers: lost, answered twice, answered wrongly (a record for a
    malformed input, a dead letter with another reason), answers of no input, keys whose first
    answers are out of input order, and the models (version and file hash) that answered.
    An input without an `expect` header is judged by `expect_of_value(payload)`, if given."""
    inp, out, dlq = topics
    expected = {}
    key_of = {}
    values = "true" if expect_of_value else "false"
    for line in kafka.consume(inp, "print.partition=true", "print.offset=true",
                              "print.headers=true", "print.key=true", f"print.value={values}"):
        # Partition:P \x1e Offset:O \x1e headers \x1e key [\x1e value]
        parts = line.split("\x1e")
        p = int(parts[0].split(":")[1])
        o = int(parts[1].split(":")[1])
        expect = headers_of(parts[2]).get("expect")
        if expect is None and expect_of_value and len(parts) > 4:
            expect = expect_of_value(parts[4])
        expected[(p, o)] = expect or "?"
        key_of[(p, o)] = parts[3] if len(parts) > 3 else ""
    answers = defaultdict(list)
    order = defaultdict(list)
    models = defaultdict(int)
    for line in kafka.consume(out):
        rec = json.loads(line)
        src = (rec["source"]["partition"], rec["source"]["offset"])
        # Per-key order; a null key (printed `null`) has none: its records spread over the
        # output partitions.
        if not answers[src] and key_of.get(src) != "null":
            order[(src[0], key_of.get(src))].append(src[1])
        answers[src].append("ok")
        model = rec.get("model") or {}
        models[f"{model.get('version')} {str(model.get('sha256'))[:12]}"] += 1
    for line in kafka.consume(dlq, "print.headers=true", "print.value=false"):
        hs = headers_of(line)
        src = (int(hs["moderato-source-partition"]), int(hs["moderato-source-offset"]))
        answers[src].append(hs.get("moderato-error", "?"))
    lost = sum(1 for k in expected if not answers.get(k))
    dups = sum(1 for a in answers.values() if len(a) > 1)
    wrong = sum(1 for k, a in answers.items() if k in expected and a[0] != expected[k])
    stray = sum(1 for k in answers if k not in expected)
    disorder = sum(1 for offs in order.values() if offs != sorted(offs))
    malformed = sum(1 for v in expected.values() if v != "ok")
    return {"inputs": len(expected), "malformed": malformed, "lost": lost,
            "duplicates": dups, "wrong": wrong, "stray": stray,
            "keys_out_of_order": disorder, "sent": count, "models": dict(models)}


def build():
    """The release binary, built if it is out of date."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "moderato"], cwd=REPO,
                   check=True)


def start_broker(directory):
    """Starts Apache Kafka (scripts/broker) in `directory`, owned by this process (the broker
    dies with it), and returns its PLAINTEXT bootstrap address."""
    env = dict(os.environ, BROKER_OWNER_PID=str(os.getpid()))
    out = subprocess.run([os.path.join(REPO, "scripts", "broker"), "start", directory],
                         check=True, capture_output=True, text=True, env=env).stdout
    return re.search(r"^BOOTSTRAP=(\S+)$", out, re.M).group(1)


def stop_broker(directory):
    """Stops the broker of `directory`."""
    subprocess.run([os.path.join(REPO, "scripts", "broker"), "stop", directory], check=False)


def produce_paced(kafka, topic, count, rate, progress, first=0):
    """Writes inputs first..first+count at `rate` per second; `progress[0]` is how many are
    written, `progress[1]` the producer's exit status once it is done."""
    proc = kafka.producer(topic)
    t0 = time.time()
    chunk = max(1, rate // 100)
    for start in range(0, count, chunk):
        end = min(count, start + chunk)
        proc.stdin.write("".join(input_line(first + i) for i in range(start, end)))
        progress[0] = end
        ahead = t0 + progress[0] / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
    proc.stdin.close()
    proc.wait()
    progress[1] = proc.returncode


def svg_panels(path, panels, events, width=800, panel_h=150):
    """A plot of stacked panels over one time axis: each panel is (label, [(name, colour,
    [(t, value)...])...]); `events` are (t, text) marked by dashed lines."""
    pad = 50
    h = pad * (len(panels) + 1) + panel_h * len(panels)
    ts = [t for _, series in panels for _, _, pts in series for t, _ in pts] + [1]
    t_max = max(ts)

    def x(t):
        return pad + (width - 2 * pad) * t / t_max

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{h}" fill="white"/>']
    for k, (label, series) in enumerate(panels):
        top = pad + k * (panel_h + pad)
        vmax = max([v for _, _, pts in series for _, v in pts if v is not None] + [1]) * 1.15
        out.append(f'<rect x="{pad}" y="{top}" width="{width - 2 * pad}" height="{panel_h}" '
                   f'fill="none" stroke="#999"/>')
        out.append(f'<text x="{pad}" y="{top - 6}">{label} (0 to {vmax:,.0f})</text>')
        for j, (name, colour, pts) in enumerate(series):
            line = " ".join(f"{x(t):.1f},{top + panel_h - panel_h * v / vmax:.1f}"
                            for t, v in pts if v is not None)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                       f'points="{line}"/>')
            if name:
                out.append(f'<text x="{width - pad - 120 + 60 * j}" y="{top + 14}" '
                           f'fill="{colour}">{name}</text>')
    for t, what in events:
        out.append(f'<line x1="{x(t):.1f}" y1="{pad}" x2="{x(t):.1f}" y2="{h - pad}" '
                   f'stroke="#888" stroke-dasharray="3,3"/>')
        out.append(f'<text x="{x(t) + 3:.1f}" y="{h - pad + 14}">{what}</text>')
    out.append(f'<text x="{width / 2 - 40}" y="{h - 8}">seconds (0 to {t_max:.0f})</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
