#!/usr/bin/env python3
"""Model card gap: the default model vs one model per data set, on each set's dev split.

For each of the nine data sets this trains a per-data-set model on the set's own label column
(`moderato train --data ... --label ...`), scores it on dev (`moderato eval`), scores the default
model on the same dev rows with the set's labels recovered from the heads (`moderato eval
--config training/default.toml`), and prints both and the gap as a Markdown table.

    python3 training/gap.py [--model models/default.model] [--data-root ../shared/data]

Standard library only. Metric: macro-F1; SemEval's F_avg for the two stance sets.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# data set, label column, target column, row of the default model's dev summary
SETS = [
    ("semeval2016_stance", "stance", "target", "stance"),
    ("olid", "subtask_a", None, "column:subtask_a"),
    ("davidson2017", "class", None, "column:class"),
    ("mubarak2017_aljazeera", "level", None, "column:level"),
    ("mubarak2017_twitter", "level", None, "column:level"),
    ("mpold", "majority_label", None, "column:majority_label"),
    ("osact4", "offensive", None, "column:offensive"),
    ("lhsab", "class", None, "column:class"),
    ("mawqif", "stance", "target", "stance"),
]


def run(cmd):
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{done.stderr}")
    return done.stdout


def primary(metrics):
    return metrics["f_avg"] if metrics.get("f_avg") is not None else metrics["macro_f1"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moderato", default=os.path.join(ROOT, "target/release/moderato"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models/default.model"))
    ap.add_argument("--config", default=os.path.join(ROOT, "training/default.toml"))
    ap.add_argument("--data-root", default=os.path.join(ROOT, "../shared/data"))
    ap.add_argument("--out", help="also write the rows as JSON here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="moderato-gap-")
    default_json = os.path.join(tmp, "default.json")
    run([args.moderato, "eval", "--model", args.model, "--config", args.config,
         "--data-root", args.data_root, "--json", default_json])
    with open(default_json, encoding="utf-8") as f:
        default_rows = json.load(f)
    rows = []
    for name, label, target, head in SETS:
        d = os.path.join(args.data_root, name)
        model = os.path.join(tmp, f"{name}.model")
        cmd = [args.moderato, "train", "--quiet", "--data", f"{d}/train.csv", "--dev", f"{d}/dev.csv",
               "--label", label, "--out", model]
        if target:
            cmd += ["--target", target]
        run(cmd)
        report = os.path.join(tmp, name)
        cmd = [args.moderato, "eval", "--model", model, "--data", f"{d}/dev.csv", "--label", label,
               "--report", report]
        if target:
            cmd += ["--target", target]
        run(cmd)
        with open(os.path.join(report, "metrics.json"), encoding="utf-8") as f:
            per_set = primary(json.load(f))
        match = [r for r in default_rows if r["dataset"] == name and r["head"] == head]
        if not match:
            sys.exit(f"the default model's dev summary has no row {name}/{head}")
        default = match[0]["f_avg"] if match[0]["f_avg"] is not None else match[0]["macro_f1"]
        rows.append({"dataset": name, "column": label, "metric": "F_avg" if target else "macro-F1",
                     "per_set": per_set, "default": default, "gap": per_set - default})
    print("| data set | column | metric | per-set model | default model | gap |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dataset']} | {r['column']} | {r['metric']} | {r['per_set']:.4f} | {r['default']:.4f} | {r['gap']:+.4f} |")
    within = sum(1 for r in rows if r["gap"] <= 0.03)
    print(f"\nwithin 0.03 of the per-set model: {within} of {len(rows)} sets")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
