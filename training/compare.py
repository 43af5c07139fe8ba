"""Two models trained from (variants of) training/default.toml, side by side on every data set's
dev split: each set scored with its own `domain` and with none (a new site), on the task the
data set labels (its own label column rebuilt by the config's `recover` rules, F_avg for
stance). Dev chose nothing in either model (cross-validation did), so this is what a change to
the training data costs or gains.

Run: python3 training/compare.py --a A.model --b B.model [--names A,B] [--config training/default.toml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Tasks that are a head's own score rather than a label column: OSACT4's hate_speech column is
# not the one its `recover` rules rebuild, so its task is the `hate` head on OSACT4.
EXTRA = {"osact4/hate"}


def evaluate(exe: str, model: str, config: str, no_domain: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        cmd = [exe, "eval", "--model", model, "--config", config, "--json", str(out)]
        if no_domain:
            cmd.append("--no-domain")
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if p.returncode != 0:
            raise SystemExit(f"eval of {model} failed: {p.stderr[-2000:]}")
        rows = json.loads(out.read_text())
    tasks = {}
    for r in rows:
        if r["head"] == "stance":
            tasks[r["dataset"] + "/stance"] = r["f_avg"]
        elif r["head"].startswith("column:"):
            tasks[r["dataset"] + "/" + r["head"][len("column:"):]] = r["macro_f1"]
        elif r["dataset"] + "/" + r["head"] in EXTRA:
            tasks[r["dataset"] + "/" + r["head"]] = r["macro_f1"]
    return tasks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--names", default="A,B")
    ap.add_argument("--config", default="training/default.toml")
    ap.add_argument("--exe", default="target/release/moderato")
    ap.add_argument("--json", help="write the table as JSON here")
    a = ap.parse_args(argv)
    na, nb = a.names.split(",")
    exe = str(REPO / a.exe) if not Path(a.exe).is_absolute() else a.exe
    cols = {}
    for label, model in [(na, a.a), (nb, a.b)]:
        for mode, no_domain in [("domain", False), ("none", True)]:
            cols[(label, mode)] = evaluate(exe, model, a.config, no_domain)
    tasks = list(cols[(na, "domain")])
    head = f"{'task (dev)':<34}" + "".join(
        f"{label + ' ' + mode:>16}" for label in (na, nb) for mode in ("domain", "none"))
    print(head + f"{'Δ domain':>10}{'Δ none':>10}")
    table = []
    for t in tasks:
        vals = [cols[(label, mode)].get(t) for label in (na, nb) for mode in ("domain", "none")]
        delta = [None if vals[i + 2] is None or vals[i] is None else vals[i + 2] - vals[i]
                 for i in (0, 1)]
        fmt = lambda v, w=16: f"{v:>{w}.4f}" if v is not None else f"{'-':>{w}}"
        print(f"{t:<34}" + "".join(fmt(v) for v in vals)
              + "".join(f"{d:>+10.4f}" if d is not None else f"{'-':>10}" for d in delta))
        table.append({"task": t, **{f"{label}_{mode}": cols[(label, mode)].get(t)
                                    for label in (na, nb) for mode in ("domain", "none")}})
    print(f"Δ: {nb} − {na}. 'domain': each set scored with its own domain; 'none': no domain.")
    if a.json:
        Path(a.json).write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
