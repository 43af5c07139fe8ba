"""The new-site benchmark: what a platform the default model has never seen should expect.

For each toxicity data set NAME of a training config (default: training/default.toml):
  1. train the config without it:  moderato train --config CFG --skip-dataset NAME --out M
  2. score NAME's dev split with no domain (a new site, zero labels):
       moderato eval --config CFG --model M --no-domain
  2b. calibrate M on T of NAME's *train* texts without their labels, as a site on its first day
     with only its traffic (T = 1000), and score dev as that site:
       moderato calibrate --model M --traffic T.jsonl --domain newsite:NAME --out M_T
  3. calibrate M on N of NAME's labelled *train* rows (and the traffic of 2b, whose rule the
     decisions judge beside the others), as a site whose moderators label N
     comments (N = 100, 300, 1000), and score dev again as that site:
       moderato calibrate --model M --feedback N.jsonl --traffic T.jsonl --domain newsite:NAME --out M_N
       moderato eval --config CFG --model M_N --as-domain newsite:NAME
and prints one table beside the per-set model (`moderato train --data NAME/train.csv`) and the
untuned scikit-learn peer (benches/peers/peers.py), both trained on NAME's train split alone.
Nothing here reads NAME's dev split except to score; nothing is chosen on it.

Run: benches/newsite/run.sh [--sets olid,lhsab] [--sizes 100,300,1000] [--traffic 1000]
     [--model M] [--no-peers]
Models are cached in --work (keyed by the config's and the binary's SHA-256).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def log(msg: str) -> None:
    print(f"[newsite] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str]) -> str:
    started = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-3000:]}")
    log(f"{' '.join(cmd[:3])} ... {time.time() - started:.0f} s")
    return p.stdout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def tasks_of(ds: dict) -> list[tuple[str, str]]:
    """(label column, row name in `eval --json`) of a data set's toxicity tasks."""
    out = []
    recover = ds.get("recover")
    if recover:
        out.append((recover["column"], f"column:{recover['column']}"))
    for head, spec in ds.get("labels", {}).items():
        if head == "stance" or (recover and spec["column"] == recover["column"]):
            continue
        if all(spec["column"] != c for c, _ in out):
            out.append((spec["column"], head))
    return out


def decisions(ds: dict, train_csv: Path, n: int, seed: int, domain: str) -> list[dict]:
    """The first n of the shuffled train rows as moderators' decisions, one per labelled head."""
    with open(train_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if (r.get(ds.get("text", "text")) or "").strip()]
    random.Random(seed).shuffle(rows)
    out = []
    for r in rows[:n]:
        for head, spec in ds.get("labels", {}).items():
            value = r.get(spec["column"], "")
            if value in spec.get("positive", []):
                label = True
            elif value in spec.get("negative", []) or (not spec.get("negative") and value):
                label = False
            else:
                continue
            out.append({"id": r.get("id", ""), "text": r[ds.get("text", "text")], "head": head,
                        "label": label, "domain": domain, "joined": "message", "at": 0.0})
    return out


def traffic(ds: dict, train_csv: Path, n: int, seed: int, domain: str) -> list[dict]:
    """n shuffled train texts, without their labels: a site's unlabelled comments."""
    with open(train_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if (r.get(ds.get("text", "text")) or "").strip()]
    random.Random(seed + 1).shuffle(rows)
    return [{"id": r.get("id", ""), "text": r[ds.get("text", "text")], "domain": domain}
            for r in rows[:n]]


def eval_rows(exe: Path, cfg: Path, model: Path, domain_args: list[str], work: Path,
              name: str, data_root: Path) -> dict[str, float]:
    out = work / f"eval-{model.stem}-{'-'.join(domain_args).replace(':', '_') or 'own'}.json"
    run([str(exe), "eval", "--config", str(cfg), "--model", str(model), "--data-root",
         str(data_root), *domain_args, "--json", str(out)])
    scores = json.loads(out.read_text())
    return {s["head"]: s["macro_f1"] for s in scores if s["dataset"] == name}


def peer_scores(name: str, columns: list[str], data_root: Path, exe: Path, work: Path) -> dict:
    """Untuned scikit-learn and the per-set moderato model, trained on NAME's train split."""
    sys.path.insert(0, str(REPO / "benches" / "peers"))
    import peers  # noqa: E402 (needs benches/peers' virtualenv: scikit-learn)

    out = {}
    for task in peers.TASKS:
        if task.dataset != name or task.label not in columns:
            continue
        train = peers.load_split(data_root / name / "train.csv", task)
        dev = peers.load_split(data_root / name / "dev.csv", task)
        classes = sorted(set(train.labels) | set(dev.labels))
        sk = peers.run_sklearn(task, train, dev, classes, "liblinear")
        majority = max(set(train.labels), key=train.labels.count)
        mo = peers.run_moderato(task, exe, data_root / name / "train.csv", dev, classes, work,
                                None, majority)
        out[task.label] = {"sklearn": sk.get("score"), "per_set": mo.get("score")}
    return out


def fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:.3f} "


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="training/default.toml")
    ap.add_argument("--data-root", help="default: the config's data_root, from the repo root")
    ap.add_argument("--exe", default="target/release/moderato")
    ap.add_argument("--train-exe", help="binary that trains (the skip-one models and the per-set "
                                        "models; default: --exe), to reuse cached models when "
                                        "only scoring or calibration changed")
    ap.add_argument("--work", default="target/newsite", help="models and decisions (outside git)")
    ap.add_argument("--sets", help="comma-separated data sets (default: every toxicity set)")
    ap.add_argument("--sizes", default="100,300,1000")
    ap.add_argument("--model", help="score this model in place of the skip-one models (no training). "
                    "A model trained on every set measures calibration alone; one trained with "
                    "--skip-dataset NAME, given with --sets NAME, is that set's skip-one model")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--traffic", type=int, default=1000,
                    help="unlabelled train texts of the traffic column")
    ap.add_argument("--no-peers", action="store_true", help="skip the per-set and sklearn columns")
    ap.add_argument("--json", help="write the table as JSON here")
    a = ap.parse_args(argv)

    cfg_path = (REPO / a.config).resolve()
    cfg = tomllib.loads(cfg_path.read_text())
    # Relative data roots are relative to the repository root, as `moderato train` runs there.
    data_root = (REPO / (a.data_root or cfg.get("data_root", "../shared/data"))).resolve()
    exe = (REPO / a.exe).resolve()
    train_exe = (REPO / (a.train_exe or a.exe)).resolve()
    work = (REPO / a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in a.sizes.split(",") if s]
    # Augmentation rows (`augment = true`) are no site: they have no dev split to score.
    toxic = [d for d in cfg["datasets"]
             if tasks_of(d) and "target" not in d and not d.get("augment")]
    if a.sets:
        wanted = a.sets.split(",")
        toxic = [d for d in toxic if d["name"] in wanted]
    key = f"{sha(cfg_path)}-{sha(train_exe)}" + (f"-{sha(REPO / a.model)}" if a.model else "")
    table = []
    for ds in toxic:
        name = ds["name"]
        log(f"{name}: train without it")
        skip = (REPO / a.model).resolve() if a.model else work / f"skip-{name}-{key}.model"
        if not skip.exists():
            run([str(train_exe), "train", "--config", str(cfg_path), "--data-root", str(data_root),
                 "--skip-dataset", name, "--out", str(skip), "--quiet"])
        tasks = tasks_of(ds)
        zero = eval_rows(exe, cfg_path, skip, ["--no-domain"], work, name, data_root)
        site = f"newsite:{name}"
        # A config's explicit paths are relative to the directory `moderato train` runs in.
        train_csv = REPO / ds["train"] if "train" in ds else data_root / name / "train.csv"
        tr = work / f"traffic-{name}-{a.traffic}.jsonl"
        comments = traffic(ds, train_csv, a.traffic, a.seed, site)
        tr.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in comments))
        least = str(min(len(comments), 200))
        by_traffic = {}
        if comments:
            cal = work / f"traffic-{name}-{a.traffic}-{key}-{sha(exe)}.model"
            run([str(exe), "calibrate", "--model", str(skip), "--traffic", str(tr), "--domain",
                 site, "--min-comments", least, "--out", str(cal)])
            by_traffic = eval_rows(exe, cfg_path, cal, ["--as-domain", site], work, name,
                                   data_root)
        curve = {}
        for n in sizes:
            lines = decisions(ds, train_csv, n, a.seed, site)
            fb = work / f"decisions-{name}-{n}.jsonl"
            fb.write_text("".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines))
            cal = work / f"cal-{name}-{n}-{key}-{sha(exe)}.model"
            # The site's traffic too: its base-rate rule is one the decisions judge.
            with_traffic = ["--traffic", str(tr), "--min-comments", least] if comments else []
            run([str(exe), "calibrate", "--model", str(skip), "--feedback", str(fb), "--domain",
                 site, *with_traffic, "--out", str(cal), "--seed", str(a.seed)])
            curve[n] = eval_rows(exe, cfg_path, cal, ["--as-domain", site], work, name, data_root)
        peers = ({} if a.no_peers
                 else peer_scores(name, [c for c, _ in tasks], data_root, train_exe, work))
        for column, row in tasks:
            table.append({
                "task": f"{name}/{column}",
                "per_set": peers.get(column, {}).get("per_set"),
                "sklearn": peers.get(column, {}).get("sklearn"),
                "zero_label": zero.get(row),
                "traffic": by_traffic.get(row),
                **{f"calibrated_{n}": curve[n].get(row) for n in sizes},
            })
    cols = ["per_set", "sklearn", "zero_label", "traffic", *[f"calibrated_{n}" for n in sizes]]
    heads = ["per-set", "sklearn", "0 labels", "traffic", *[f"+{n}" for n in sizes]]
    print(f"{'task (macro-F1 on dev)':<34}" + "".join(f"{h:>10}" for h in heads))
    for r in table:
        print(f"{r['task']:<34}" + "".join(f"{fmt(r[c]):>10}" for c in cols))
    print(("0 labels: the --model given, scored with no domain; "
           if a.model else "0 labels: trained without the set, scored with no domain; ")
          + "traffic: calibrated on "
          f"{a.traffic} of its train texts, labels unread (moderato calibrate --traffic); +N: "
          "calibrated on N of its labelled train rows (moderato calibrate --feedback, with the "
          "traffic rule among those compared); per-set "
          "and sklearn: trained on its train split.")
    if a.json:
        Path(a.json).write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
