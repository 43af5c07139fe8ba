#!/usr/bin/env python3
"""Peer benchmark for moderato: scikit-learn and fastText baselines vs moderato.

For each (data set, label column) task, moderato and two peer classifiers are put
through one protocol: each trains on train.csv alone (moderato chooses its settings
by cross-validation on those rows; the peers are not tuned), and each is scored
once on dev.csv, which nothing chose anything on.  All three are scored by the same
metric code (`score_per_class`) from their per-row dev predictions, and a paired
bootstrap over dev rows gives an interval for moderato - peer.
A second part measures classify throughput of moderato vs fastText.

See README.md beside this file.  Data is read in place (default ../shared/data
relative to the repo root) and never copied into the repository: every derived
file (fastText training files, moderato models, the throughput JSONL) goes to a
work directory outside the repo (default: a fresh temporary directory).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

csv.field_size_limit(sys.maxsize)


# --------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class Task:
    dataset: str
    label: str
    target: str | None = None

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.label}"

    @property
    def is_stance(self) -> bool:
        return self.target is not None

    @property
    def metric(self) -> str:
        return "f_avg" if self.is_stance else "macro_f1"

    @property
    def slug(self) -> str:
        return f"{self.dataset}__{self.label}"


TASKS: list[Task] = [
    Task("semeval2016_stance", "stance", "target"),
    Task("mawqif", "stance", "target"),
    Task("olid", "subtask_a"),
    Task("olid", "subtask_b"),
    Task("davidson2017", "class"),
    Task("mubarak2017_aljazeera", "level"),
    Task("mubarak2017_twitter", "level"),
    Task("mpold", "majority_label"),
    Task("osact4", "offensive"),
    Task("osact4", "hate_speech"),
    Task("lhsab", "class"),
]

ALL_DATASETS = [
    "semeval2016_stance",
    "olid",
    "davidson2017",
    "mubarak2017_aljazeera",
    "mubarak2017_twitter",
    "mpold",
    "osact4",
    "lhsab",
    "mawqif",
]

THROUGHPUT_FT_TASK = Task("olid", "subtask_a")

# The nine tasks whose test splits the product is judged on; the mean is taken over these.
HEADLINE = {
    "semeval2016_stance/stance", "mawqif/stance", "olid/subtask_a", "osact4/offensive",
    "osact4/hate_speech", "mubarak2017_aljazeera/level", "lhsab/class", "mpold/majority_label",
    "davidson2017/class",
}

# The untuned peers: the scikit-learn model of the issue tracker's held-out measurement (C=4),
# and fastText with one fixed setting. Tuning either on dev would break the protocol.
SK_C = 4.0
FT_EPOCH, FT_LR = 25, 0.5
FT_SEED = 1
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 12345


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Data


@dataclass
class Split:
    texts: list[str]
    labels: list[str]
    targets: list[str] | None
    dropped: int = 0  # rows with an empty label cell


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def load_split(path: Path, task: Task, max_rows: int | None = None) -> Split:
    header, rows = read_rows(path)
    for col in ["text", task.label] + ([task.target] if task.target else []):
        if col not in header:
            raise SystemExit(f"{path}: no column {col!r} (header: {header})")
    if max_rows is not None:
        rows = rows[:max_rows]
    texts, labels, targets, dropped = [], [], [], 0
    for r in rows:
        lab = (r.get(task.label) or "").strip()
        if lab == "":
            dropped += 1
            continue
        texts.append(r["text"] or "")
        labels.append(lab)
        if task.target:
            targets.append((r.get(task.target) or "").strip())
    return Split(texts, labels, targets if task.target else None, dropped)


# --------------------------------------------------------------------------
# Metrics (shared by all three systems)


def per_class_from_predictions(gold: list[str], pred: list[str], classes: list[str]) -> dict:
    """precision / recall / f1 / support per class (0 where undefined, like sklearn's zero_division=0)."""
    out = {}
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[c] = {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn}
    return out


def score_per_class(per_class: dict, stance: bool) -> dict:
    """The table's metrics, computed only from a per_class dict {class: {"f1": ..}}.

    macro_f1 = mean of the per-class F1 over all classes in per_class;
    f_avg    = mean of the F1 of FAVOR and AGAINST (class names matched case-insensitively),
               SemEval-2016 Task 6's official measure; None for non-stance tasks.
    """
    f1s = {str(k): float(v.get("f1") or 0.0) for k, v in per_class.items()}
    macro = sum(f1s.values()) / len(f1s) if f1s else float("nan")
    f_avg = None
    if stance:
        low = {k.lower(): v for k, v in f1s.items()}
        missing = [c for c in ("favor", "against") if c not in low]
        if missing:
            log(f"warning: per_class has no {missing} class; counted as F1 = 0")
        f_avg = (low.get("favor", 0.0) + low.get("against", 0.0)) / 2
    return {"macro_f1": macro, "f_avg": f_avg}


def headline(scores: dict | None, task: Task) -> float | None:
    if not scores:
        return None
    return scores["f_avg"] if task.is_stance else scores["macro_f1"]


def accuracy(gold: list[str], pred: list[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else float("nan")


# --------------------------------------------------------------------------
# Peer 1: scikit-learn TF-IDF (char_wb 1-5 + word 1-2) + logistic regression


def groups_of(split: Split, task: Task) -> dict[str | None, list[int]]:
    """Row indices per target (one group `None` for untargeted tasks)."""
    g: dict[str | None, list[int]] = {}
    for i in range(len(split.labels)):
        key = split.targets[i] if task.is_stance else None
        g.setdefault(key, []).append(i)
    return g


def run_sklearn(task: Task, train: Split, dev: Split, classes: list[str], solver: str) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion

    t0 = time.monotonic()
    tr_groups = groups_of(train, task)
    dev_groups = groups_of(dev, task)
    unseen = [k for k in dev_groups if k not in tr_groups]
    if unseen:
        log(f"warning: dev targets without training rows: {unseen} (predicted as the majority class)")
    majority = max(set(train.labels), key=train.labels.count)
    pred = [majority] * len(dev.labels)
    for key, tr_idx in tr_groups.items():
        dv_idx = dev_groups.get(key, [])
        if not dv_idx:
            continue
        union = FeatureUnion([
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True,
                                     min_df=2, lowercase=True)),
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True,
                                     min_df=1, lowercase=True)),
        ])
        Xtr = union.fit_transform([train.texts[i] for i in tr_idx])
        ytr = [train.labels[i] for i in tr_idx]
        labs = sorted(set(ytr))
        if len(labs) == 1:
            p = [labs[0]] * len(dv_idx)
        else:
            if solver == "saga":
                lr = LogisticRegression(C=SK_C, class_weight="balanced", max_iter=2000,
                                        solver="saga", random_state=0)
            else:
                lr = LogisticRegression(C=SK_C, class_weight="balanced", max_iter=2000,
                                        solver="liblinear", random_state=0)
                # liblinear is binary-only in scikit-learn >= 1.8: explicit one-vs-rest.
                lr = OneVsRestClassifier(lr) if len(labs) > 2 else lr
            p = lr.fit(Xtr, ytr).predict(union.transform([dev.texts[i] for i in dv_idx]))
        for i, lab in zip(dv_idx, p):
            pred[i] = str(lab)
    pc = per_class_from_predictions(dev.labels, pred, classes)
    sc = score_per_class(pc, task.is_stance)
    log(f"  sklearn {task.name} C={SK_C}: {task.metric}={headline(sc, task):.4f}")
    return {
        "system": "sklearn",
        "params": {"C": SK_C, "solver": "saga" if solver == "saga" else "liblinear",
                   "per_target": task.is_stance, "tuned": False},
        "score": headline(sc, task),
        "scores": sc,
        "accuracy": accuracy(dev.labels, pred),
        "per_class": pc,
        "predictions": pred,
        "seconds": time.monotonic() - t0,
    }


# --------------------------------------------------------------------------
# Peer 2: fastText supervised


def ft_clean(text: str) -> str:
    """Text fed to fastText: lowercased, line breaks (and other vertical space) -> spaces."""
    t = text.lower()
    for ch in ("\r\n", "\r", "\n", "\v", "\f", "\u0085", "\u2028", "\u2029"):
        t = t.replace(ch, " ")
    return t


def ft_train(path: Path, epoch: int, lr: float):
    import fasttext

    return fasttext.train_supervised(
        input=str(path), minn=2, maxn=5, wordNgrams=2, epoch=epoch, lr=lr, dim=100,
        thread=1, seed=FT_SEED, verbose=0,
    )


def ft_write_train(path: Path, texts: list[str], labels: list[str], lab2id: dict[str, int]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t, lab in zip(texts, labels):
            f.write(f"__label__{lab2id[lab]} {ft_clean(t)}\n")


def ft_predict(model, lines: list[str], id2lab: list[str]) -> list[str]:
    # list input only: fastText 0.9.3's single-string predict breaks under numpy 2.
    labels, _ = model.predict(lines, k=1)
    return [id2lab[int(l[0][len("__label__"):])] for l in labels]


def run_fasttext(task: Task, train: Split, dev: Split, classes: list[str], work: Path) -> dict:
    t0 = time.monotonic()
    lab2id = {c: i for i, c in enumerate(classes)}
    tr_groups = groups_of(train, task)
    dev_groups = groups_of(dev, task)
    majority = max(set(train.labels), key=train.labels.count)
    dev_lines = [ft_clean(t) for t in dev.texts]
    pred = [majority] * len(dev.labels)
    try:
        for n, (key, tr_idx) in enumerate(tr_groups.items()):
            dv_idx = dev_groups.get(key, [])
            if not dv_idx:
                continue
            p = work / f"ft_{task.slug}_{n}.txt"
            ft_write_train(p, [train.texts[i] for i in tr_idx], [train.labels[i] for i in tr_idx],
                           lab2id)
            m = ft_train(p, FT_EPOCH, FT_LR)
            p.unlink(missing_ok=True)
            for i, lab in zip(dv_idx, ft_predict(m, [dev_lines[i] for i in dv_idx], classes)):
                pred[i] = lab
            del m
    except Exception as e:  # e.g. "Encountered NaN"
        log(f"  fasttext {task.name}: failed ({e})")
        return {"system": "fasttext", "error": str(e), "score": None,
                "seconds": time.monotonic() - t0}
    pc = per_class_from_predictions(dev.labels, pred, classes)
    sc = score_per_class(pc, task.is_stance)
    log(f"  fasttext {task.name} epoch={FT_EPOCH} lr={FT_LR}: {task.metric}={headline(sc, task):.4f}")
    return {
        "system": "fasttext",
        "params": {"epoch": FT_EPOCH, "lr": FT_LR, "minn": 2, "maxn": 5, "wordNgrams": 2,
                   "dim": 100, "thread": 1, "seed": FT_SEED, "per_target": task.is_stance,
                   "tuned": False},
        "score": headline(sc, task),
        "scores": sc,
        "accuracy": accuracy(dev.labels, pred),
        "per_class": pc,
        "predictions": pred,
        "seconds": time.monotonic() - t0,
    }


# --------------------------------------------------------------------------
# moderato (external binary, CLI contract in README.md)


def ensure_moderato(args) -> Path | None:
    exe = Path(args.moderato)
    if not exe.is_absolute():
        exe = REPO_ROOT / exe
    if exe.exists():
        return exe
    if args.no_build:
        log(f"moderato binary {exe} not found and --no-build given")
        return None
    log(f"moderato binary {exe} not found: running `cargo build --release` in {REPO_ROOT}")
    r = subprocess.run(["cargo", "build", "--release"], cwd=REPO_ROOT)
    if r.returncode != 0 or not exe.exists():
        log(f"cargo build --release failed (exit {r.returncode}) or did not produce {exe}")
        return None
    return exe


def run_cmd(cmd: list[str], timeout: float | None) -> tuple[int, str, float]:
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           text=True, errors="replace", cwd=REPO_ROOT)
        return r.returncode, r.stdout, time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -9, out + f"\n[timeout after {timeout}s]", time.monotonic() - t0


def tail(s: str, n: int = 15) -> str:
    """The interesting part of a failed command's output: a Rust panic message or `error:` lines
    if there are any (a backtrace would otherwise push them out), else the last n lines."""
    s = re.sub(r"\x1b\[[0-9;]*m", "", s)  # ANSI colours
    lines = [l for l in s.strip().splitlines()
             if not l.startswith(_TIME_MARK) and not l.startswith("Command exited with non-zero status")]
    for i, l in enumerate(lines):
        if "panicked at" in l:
            return "\n".join(lines[i:i + 3])
    errs = [l for l in lines if l.lstrip().lower().startswith("error")]
    if errs:
        return "\n".join(errs[-n:])
    return "\n".join(lines[-n:])


def run_moderato(task: Task, exe: Path, train_csv: Path, dev: Split, classes: list[str],
                 work: Path, timeout: float | None, majority: str) -> dict:
    """Trains on train.csv alone (no --dev: selection is moderato's own cross-validation), then
    labels every dev row with `moderato classify`, the path a user runs."""
    model = work / f"{task.slug}.model"
    tgt = ["--target", task.target] if task.target else []
    train_cmd = [str(exe), "train", "--data", str(train_csv), "--label", task.label, *tgt,
                 "--out", str(model), "--quiet"]
    dev_jsonl = work / f"{task.slug}_dev.jsonl"
    with open(dev_jsonl, "w", encoding="utf-8") as f:
        for i, text in enumerate(dev.texts):
            row = {"id": i, "text": text}
            if task.target:
                row["target"] = dev.targets[i]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    labelled = work / f"{task.slug}_dev.labels.jsonl"
    classify_cmd = [str(exe), "classify", "--model", str(model), "--input", str(dev_jsonl),
                    "--output", str(labelled)]
    res: dict = {"system": "moderato", "score": None, "model": str(model),
                 "commands": [train_cmd, classify_cmd]}
    rc, out, secs = run_cmd(train_cmd, timeout)
    res["train_seconds"] = secs
    res["train_output_tail"] = out[-4000:]
    if rc != 0:
        res["error"] = f"train exited {rc}: {tail(out)}"
        return res
    rc, out, secs = run_cmd(classify_cmd, timeout)
    res["classify_seconds"] = secs
    if rc != 0:
        res["error"] = f"classify exited {rc}: {tail(out)}"
        return res
    pred = [majority] * len(dev.labels)  # rows without a label, as the peers predict them
    missing = 0
    with open(labelled, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            head = rec.get("heads", {}).get(task.label)
            if "id" not in rec or not head or "label" not in head:
                missing += 1
                continue
            pred[int(rec["id"])] = str(head["label"])
    if missing:
        log(f"warning: moderato gave no {task.label} label for {missing} dev rows")
    res["unlabelled_rows"] = missing
    pc = per_class_from_predictions(dev.labels, pred, classes)
    sc = score_per_class(pc, task.is_stance)
    res.update({"score": headline(sc, task), "scores": sc, "per_class": pc,
                "accuracy": accuracy(dev.labels, pred), "predictions": pred})
    return res


# --------------------------------------------------------------------------
# Paired bootstrap over dev rows


def metric_of(task: Task, gold: list[str], pred: list[str], classes: list[str]) -> float:
    return headline(score_per_class(per_class_from_predictions(gold, pred, classes),
                                    task.is_stance), task)


def bootstrap_diffs(task: Task, gold: list[str], a: list[str], b: list[str], classes: list[str],
                    rounds: int, seed: int):
    """metric(a) - metric(b) on `rounds` resamples of the dev rows (the same rows for both)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = {c: i for i, c in enumerate(classes)}
    g = np.array([idx[x] for x in gold])
    pa = np.array([idx.get(x, -1) for x in a])
    pb = np.array([idx.get(x, -1) for x in b])
    k = len(classes)
    keep = [i for i, c in enumerate(classes) if not task.is_stance or c.lower() in ("favor", "against")]

    def score(rows, p):
        gg, pp = g[rows], p[rows]
        f1 = []
        for c in range(k):
            tp = np.sum((gg == c) & (pp == c))
            fp = np.sum((gg != c) & (pp == c))
            fn = np.sum((gg == c) & (pp != c))
            f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return float(np.mean([f1[i] for i in keep]))

    n = len(g)
    out = np.empty(rounds)
    for r in range(rounds):
        rows = rng.integers(0, n, n)
        out[r] = score(rows, pa) - score(rows, pb)
    return out


# --------------------------------------------------------------------------
# Table


def fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def print_table(results: list[dict]) -> None:
    header = ["dataset", "label", "metric", "n_dev", "sklearn", "fasttext", "moderato",
              "mod-sk", "95% CI (paired bootstrap)"]
    rows = []
    for r in results:
        d = r.get("moderato_minus_sklearn")
        ci = r.get("ci95")
        mark = "" if r["name"] in HEADLINE else " *"
        rows.append([r["dataset"], r["label"] + mark, r["metric"], str(r["n_dev"]),
                     fmt(r["sklearn"]), fmt(r["fasttext"]), fmt(r["moderato"]),
                     "-" if d is None else f"{d:+.4f}",
                     "-" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    sys.stdout.flush()


def print_mean(mean: dict | None) -> None:
    if not mean:
        return
    print()
    print(f"Mean moderato - sklearn over the {mean['tasks']} headline tasks: {mean['mean']:+.4f}, "
          f"95% CI [{mean['ci95'][0]:+.4f}, {mean['ci95'][1]:+.4f}] (paired bootstrap, "
          f"{BOOTSTRAP} resamples of each dev split); moderato >= sklearn on "
          f"{mean['at_least_peer']} of {mean['tasks']}")
    print("(* not one of the nine headline tasks: not in the mean)")
    print("Protocol: every system trains on train.csv only; moderato chooses C, learner, offsets and "
          "block normalization by stratified k-fold CV on those rows (5 folds, 3 from 10,000 rows); "
          "the peers are untuned; dev is scored once.")
    sys.stdout.flush()


def mean_over_headline(results: list[dict]) -> dict | None:
    """The mean difference over the headline tasks, with a bootstrap that resamples every
    task's dev rows on its own (each task's generator starts from the same seed, so tasks of
    equal dev size share resample indices) and averages the per-task differences."""
    import numpy as np

    rows = [r for r in results if r["name"] in HEADLINE and r.get("boot") is not None]
    if not rows:
        return None
    boots = np.mean(np.stack([r["boot"] for r in rows]), axis=0)
    diffs = [r["moderato_minus_sklearn"] for r in rows]
    return {"tasks": len(rows), "mean": float(np.mean(diffs)),
            "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "at_least_peer": sum(d >= 0 for d in diffs)}


def summarise(task: Task, sk: dict | None, ft: dict | None, mo: dict | None, n_train: int,
              n_dev: int, dropped: tuple[int, int], classes: list[str], gold: list[str]) -> dict:
    vals = {"sklearn": sk and sk.get("score"), "fasttext": ft and ft.get("score")}
    peers = {k: v for k, v in vals.items() if v is not None}
    best_name = max(peers, key=peers.get) if peers else None
    best = peers.get(best_name) if best_name else None
    mscore = mo and mo.get("score")
    diff = boot = ci = None
    if mscore is not None and vals["sklearn"] is not None:
        diff = mscore - vals["sklearn"]
        boot = bootstrap_diffs(task, gold, mo["predictions"], sk["predictions"], classes,
                               BOOTSTRAP, BOOTSTRAP_SEED)
        ci = [float(x) for x in (sorted(boot)[int(0.025 * len(boot))],
                                 sorted(boot)[int(0.975 * len(boot)) - 1])]
    for d in (sk, ft, mo):
        if d:
            d.pop("predictions", None)
    return {
        "name": task.name, "moderato_minus_sklearn": diff, "ci95": ci, "boot": boot,
        "dataset": task.dataset, "label": task.label, "target": task.target,
        "metric": task.metric, "classes": classes,
        "n_train": n_train, "n_dev": n_dev,
        "dropped_empty_label": {"train": dropped[0], "dev": dropped[1]},
        "sklearn": vals["sklearn"], "fasttext": vals["fasttext"], "moderato": mscore,
        "best_peer": best, "best_peer_name": best_name,
        "moderato_minus_best_peer": (mscore - best) if (mscore is not None and best is not None) else None,
        "details": {"sklearn": sk, "fasttext": ft, "moderato": mo},
    }


# --------------------------------------------------------------------------
# Throughput


def all_texts(data_root: Path) -> list[str]:
    texts = []
    for ds in ALL_DATASETS:
        for split in ("train", "dev"):
            p = data_root / ds / f"{split}.csv"
            if not p.exists():
                log(f"warning: {p} missing, not used for throughput")
                continue
            _, rows = read_rows(p)
            texts.extend(r["text"] or "" for r in rows)
    return texts


def build_big(texts: list[str], n: int, path: Path) -> list[str]:
    lines = [texts[i % len(texts)] for i in range(n)]
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(lines):
            f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
    return lines


_RSS_WRAPPER = r"""
import json, resource, subprocess, sys, time
cmd = json.loads(sys.argv[1])
with open(sys.argv[2], "wb") as err:
    t0 = time.monotonic()
    rc = subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    dt = time.monotonic() - t0
print(json.dumps({"rc": rc, "seconds": dt,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

_TIME_MARK = "MODERATO_PEERS_MAXRSS_KIB="


def time_child(cmd: list[str], stderr_path: Path, method: str) -> tuple[int, float, int]:
    """Run cmd once; return (exit code, wall seconds on the monotonic clock, peak RSS in KiB).

    The peak RSS must not be measured with wait4()/getrusage() from this process: Linux
    carries the RSS high-water mark of the (v)forked parent image into the child's
    ru_maxrss, so a big parent would be reported.  Hence a small intermediary:
    `/usr/bin/time -f %M` (method "time", ~1 MiB floor) or a fresh Python process calling
    getrusage(RUSAGE_CHILDREN) (method "python", ~10 MiB floor).
    """
    if method == "time":
        with open(stderr_path, "wb") as err:
            t0 = time.monotonic()
            rc = subprocess.call(["/usr/bin/time", "-f", _TIME_MARK + "%M", *cmd],
                                 stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                 cwd=REPO_ROOT)
            dt = time.monotonic() - t0
        maxrss = -1
        for line in stderr_path.read_text(errors="replace").splitlines():
            if line.startswith(_TIME_MARK):
                maxrss = int(line[len(_TIME_MARK):])
        return rc, dt, maxrss
    r = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, json.dumps(cmd), str(stderr_path)],
                       stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, check=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["rc"], d["seconds"], d["maxrss_kib"]


def run_throughput(args, data_root: Path, work: Path, exe: Path | None, ft_params: dict | None,
                   moderato_fallback_model: Path | None) -> dict:
    out: dict = {"lines": args.throughput_lines, "runs": args.runs, "cpu_count": os.cpu_count(),
                 "platform": platform.platform()}
    texts = all_texts(data_root)
    if not texts:
        out["error"] = "no texts found"
        return out
    big = work / "big.jsonl"
    lines = build_big(texts, args.throughput_lines, big)
    out["distinct_source_texts"] = len(texts)
    out["jsonl_bytes"] = big.stat().st_size
    log(f"throughput: {big} = {len(lines)} lines from {len(texts)} train+dev texts, "
        f"{out['jsonl_bytes'] / 1e6:.1f} MB")

    # ---- moderato classify
    mo: dict = {}
    if args.skip_moderato:
        mo["skipped"] = True
    elif exe is None:
        mo["error"] = "moderato binary not available"
    else:
        model = Path(args.throughput_model)
        if not model.is_absolute():
            model = REPO_ROOT / model
        if not model.exists() and moderato_fallback_model is not None and moderato_fallback_model.exists():
            log(f"throughput model {model} not found; using the olid/subtask_a model trained in this run: "
                f"{moderato_fallback_model}")
            mo["fallback_from"] = str(model)
            model = moderato_fallback_model
        mo["model"] = str(model)
        if not model.exists():
            mo["error"] = f"model {model} not found (give --throughput-model)"
        else:
            cmd = [str(exe), "classify", "--model", str(model), "--input", str(big), "--output", "/dev/null"]
            mo["command"] = cmd
            method = args.rss_method
            if method == "auto":
                method = "time" if os.access("/usr/bin/time", os.X_OK) else "python"
            mo["rss_method"] = {"time": "/usr/bin/time -f %M",
                                "python": "getrusage(RUSAGE_CHILDREN) in a fresh python"}[method]
            times, rss = [], []
            for k in range(args.runs):
                rc, dt, maxrss = time_child(cmd, work / "classify.stderr", method)
                if rc != 0:
                    mo["error"] = f"classify exited {rc}: " + tail(
                        (work / "classify.stderr").read_text(errors="replace"))
                    break
                times.append(dt)
                rss.append(maxrss)
                log(f"  moderato classify run {k + 1}: {dt:.3f}s, peak RSS {maxrss / 1024:.1f} MiB")
            if times:
                med = statistics.median(times)
                mo.update({"seconds": times, "median_seconds": med,
                           "comments_per_second": len(lines) / med,
                           "peak_rss_kib": max(rss), "peak_rss_mib": max(rss) / 1024})
    out["moderato"] = mo

    # ---- fastText predict
    ft: dict = {}
    if args.skip_peers:
        ft["skipped"] = True
    else:
        task = THROUGHPUT_FT_TASK
        try:
            train = load_split(data_root / task.dataset / "train.csv", task)
            if ft_params is None and args.throughput_ft_params:
                e, l = args.throughput_ft_params.split(",")
                ft_params = {"epoch": int(e), "lr": float(l)}
            if ft_params is None:
                ft_params = {"epoch": FT_EPOCH, "lr": FT_LR}
            if ft_params is None:
                raise RuntimeError("fastText model selection failed")
            classes = sorted(set(train.labels))
            lab2id = {c: i for i, c in enumerate(classes)}
            p = work / "ft_throughput_train.txt"
            ft_write_train(p, train.texts, train.labels, lab2id)
            model = ft_train(p, ft_params["epoch"], ft_params["lr"])
            p.unlink(missing_ok=True)
            ft_lines = [ft_clean(t) for t in lines]  # loading/preparing the list: not timed
            times = []
            for k in range(args.runs):
                t0 = time.monotonic()
                model.predict(ft_lines, k=1)
                dt = time.monotonic() - t0
                times.append(dt)
                log(f"  fastText predict run {k + 1}: {dt:.3f}s")
            med = statistics.median(times)
            ft.update({"params": {"epoch": ft_params["epoch"], "lr": ft_params["lr"], "minn": 2,
                                  "maxn": 5, "wordNgrams": 2, "dim": 100},
                       "trained_on": task.name, "seconds": times, "median_seconds": med,
                       "comments_per_second": len(lines) / med})
        except Exception as e:
            ft["error"] = f"{type(e).__name__}: {e}"
    out["fasttext"] = ft
    if mo.get("comments_per_second") and ft.get("comments_per_second"):
        out["ratio_moderato_over_fasttext"] = mo["comments_per_second"] / ft["comments_per_second"]
    return out


def print_throughput(tp: dict) -> None:
    print()
    print(f"Throughput ({tp.get('lines')} comments, median of {tp.get('runs')} runs, "
          f"{tp.get('cpu_count')} CPUs)")
    mo, ft = tp.get("moderato", {}), tp.get("fasttext", {})
    if mo.get("comments_per_second"):
        print(f"  moderato classify : {mo['comments_per_second']:>12,.0f} comments/s "
              f"(median {mo['median_seconds']:.3f}s; peak RSS {mo['peak_rss_mib']:.1f} MiB "
              f"via {mo['rss_method']}; "
              f"model {mo['model']})")
    else:
        print(f"  moderato classify : - ({'skipped' if mo.get('skipped') else mo.get('error', 'not run')})")
    if ft.get("comments_per_second"):
        print(f"  fastText predict  : {ft['comments_per_second']:>12,.0f} comments/s "
              f"(median {ft['median_seconds']:.3f}s; epoch={ft['params']['epoch']} lr={ft['params']['lr']}, "
              f"trained on {ft['trained_on']})")
    else:
        print(f"  fastText predict  : - ({'skipped' if ft.get('skipped') else ft.get('error', 'not run')})")
    r = tp.get("ratio_moderato_over_fasttext")
    print(f"  ratio moderato/fastText: {r:.3f}" if r else "  ratio moderato/fastText: -")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Main


def select_tasks(only: str | None) -> list[Task]:
    if not only:
        return list(TASKS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    picked = [t for t in TASKS if any(w in (t.dataset, t.name) for w in wanted)]
    unknown = [w for w in wanted if not any(w in (t.dataset, t.name) for t in TASKS)]
    if unknown:
        raise SystemExit(f"--only: unknown task(s) {unknown}; known: {[t.name for t in TASKS]}")
    return picked


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "data"),
                    help="folder holding the data sets (default: ../shared/data relative to the repo root)")
    ap.add_argument("--moderato", default="target/release/moderato",
                    help="moderato binary (relative paths are relative to the repo root)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release if the binary is missing")
    ap.add_argument("--out", default=str(HERE / "out" / "results.json"), help="JSON results file")
    ap.add_argument("--only", help="comma-separated data set names or dataset/label tasks")
    ap.add_argument("--skip-moderato", action="store_true")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--throughput", action="store_true",
                    help="run only the throughput part (by default it runs after the table)")
    ap.add_argument("--no-throughput", action="store_true", help="run only the table")
    ap.add_argument("--throughput-model", default="models/default.model",
                    help="model for moderato classify (relative to the repo root)")
    ap.add_argument("--throughput-lines", type=int, default=200_000)
    ap.add_argument("--throughput-ft-params", metavar="EPOCH,LR",
                    help="fastText epoch,lr for the throughput model (default: the fixed peer setting)")
    ap.add_argument("--rss-method", choices=["auto", "time", "python"], default="auto",
                    help="peak-RSS measurement of classify: /usr/bin/time, or a fresh python's getrusage")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per system (median reported)")
    ap.add_argument("--work-dir", help="where derived files go (models, fastText inputs, big.jsonl); "
                                       "must be outside the repo; default: a new temporary directory")
    ap.add_argument("--keep-work", action="store_true", help="do not delete the work directory at the end")
    ap.add_argument("--max-rows", type=int, help="use only the first N rows of each train/dev file (for quick iteration; scores are then not comparable)")
    ap.add_argument("--moderato-timeout", type=float, default=3600, help="seconds per moderato train/eval call")
    ap.add_argument("--sk-solver", choices=["liblinear", "saga"], default="liblinear",
                    help="LogisticRegression solver (liblinear: binary, one-vs-rest for 3+ classes; saga: multinomial)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, "1")
    data_root = Path(args.data_root).resolve()
    if not data_root.is_dir():
        raise SystemExit(f"data root {data_root} not found (use --data-root)")
    tasks = select_tasks(args.only)

    if args.work_dir:
        work = Path(args.work_dir).resolve()
        if work == REPO_ROOT or REPO_ROOT in work.parents:
            raise SystemExit("--work-dir must be outside the repository (derived data must not land in it)")
        work.mkdir(parents=True, exist_ok=True)
        own_work = False
    else:
        work = Path(tempfile.mkdtemp(prefix="moderato-peers-"))
        own_work = True
    log(f"data root {data_root}; work dir {work}")

    exe = None
    if not args.skip_moderato:
        exe = ensure_moderato(args)

    run_table = not args.throughput
    run_tp = args.throughput or not args.no_throughput
    results: list[dict] = []
    ft_olid_params = None
    moderato_olid_model = None
    report: dict = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_root": str(data_root),
        "max_rows": args.max_rows,
        "versions": versions(),
        "tasks": results,
    }

    try:
        if run_table:
            for task in tasks:
                log(f"task {task.name}")
                tr_path = data_root / task.dataset / "train.csv"
                dv_path = data_root / task.dataset / "dev.csv"
                train = load_split(tr_path, task, args.max_rows)
                dev = load_split(dv_path, task, args.max_rows)
                classes = sorted(set(train.labels) | set(dev.labels))
                sk = ft = mo = None
                if not args.skip_peers:
                    sk = run_sklearn(task, train, dev, classes, args.sk_solver)
                    ft = run_fasttext(task, train, dev, classes, work)
                    if task == THROUGHPUT_FT_TASK and ft.get("params") and not args.max_rows:
                        ft_olid_params = ft["params"]
                if exe is not None:
                    m_tr = tr_path
                    if args.max_rows:
                        m_tr = write_subset(tr_path, work / f"{task.slug}_train.csv", args.max_rows)
                    majority = max(set(train.labels), key=train.labels.count)
                    mo = run_moderato(task, exe, m_tr, dev, classes, work, args.moderato_timeout,
                                      majority)
                    if mo.get("error"):
                        log(f"  moderato {task.name}: {mo['error']}")
                    else:
                        log(f"  moderato {task.name}: {task.metric}={mo['score']:.4f}")
                        if task == THROUGHPUT_FT_TASK:
                            moderato_olid_model = Path(mo["model"])
                elif not args.skip_moderato:
                    mo = {"system": "moderato", "score": None, "error": "binary not available"}
                results.append(summarise(task, sk, ft, mo, len(train.labels), len(dev.labels),
                                         (train.dropped, dev.dropped), classes, dev.labels))
            print_table(results)
            mean = mean_over_headline(results)
            report["mean_over_headline"] = mean
            print_mean(mean)
            print_details(results)
            for r in results:
                r.pop("boot", None)
        if run_tp:
            tp = run_throughput(args, data_root, work, exe, ft_olid_params, moderato_olid_model)
            report["throughput"] = tp
            print_throughput(tp)
    finally:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        log(f"wrote {out}")
        if own_work and not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work dir kept: {work}")
    return 0


def write_subset(src: Path, dst: Path, n: int) -> Path:
    with open(src, encoding="utf-8", newline="") as f, open(dst, "w", encoding="utf-8", newline="") as g:
        r, w = csv.reader(f), csv.writer(g)
        for i, row in enumerate(r):
            if i > n:
                break
            w.writerow(row)
    return dst


def print_details(results: list[dict]) -> None:
    print()
    print(f"Peers (untuned): sklearn C={SK_C}; fastText epoch={FT_EPOCH} lr={FT_LR}. "
          "Train times and errors:")
    for r in results:
        d = r["details"]
        bits = []
        if d.get("moderato") and d["moderato"].get("train_seconds") is not None:
            bits.append(f"moderato train {d['moderato']['train_seconds']:.1f}s")
        if d.get("fasttext"):
            if d["fasttext"].get("error"):
                bits.append(f"fastText error: {d['fasttext']['error']}")
        if d.get("moderato") and d["moderato"].get("error"):
            bits.append("moderato error: " + d["moderato"]["error"].splitlines()[0][:160])
        print(f"  {r['dataset']}/{r['label']} (train {r['n_train']}, dev {r['n_dev']}): " + ("; ".join(bits) or "-"))
    sys.stdout.flush()


def versions() -> dict:
    v = {"python": sys.version.split()[0]}
    for mod in ("sklearn", "fasttext", "numpy", "scipy"):
        try:
            m = __import__(mod)
            v[mod] = getattr(m, "__version__", None)
        except Exception:
            v[mod] = None
    if v.get("fasttext") is None:
        try:
            from importlib.metadata import version
            v["fasttext"] = version("fasttext")
        except Exception:
            pass
    return v


if __name__ == "__main__":
    sys.exit(main())
