#!/usr/bin/env python3
"""Peer benchmark for moderato: scikit-learn and fastText baselines vs moderato.

For each (data set, label column) task this trains two peer classifiers on
train.csv, tunes one hyper-parameter grid on dev.csv, and scores them on dev.csv
next to moderato (trained with `moderato train`, scored with `moderato eval`).
All three are scored by the same metric code (`score_per_class`).
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

SK_C_GRID = [0.3, 1, 3, 10, 30]
FT_EPOCH_GRID = [5, 25, 50]
FT_LR_GRID = [0.1, 0.5, 1.0]
FT_SEED = 1


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
    # Vectorise once per group (the vectoriser does not depend on C).
    feats = {}
    for key, tr_idx in tr_groups.items():
        union = FeatureUnion([
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True,
                                     min_df=2, lowercase=True)),
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True,
                                     min_df=1, lowercase=True)),
        ])
        Xtr = union.fit_transform([train.texts[i] for i in tr_idx])
        ytr = [train.labels[i] for i in tr_idx]
        dv_idx = dev_groups.get(key, [])
        Xdv = union.transform([dev.texts[i] for i in dv_idx]) if dv_idx else None
        feats[key] = (Xtr, ytr, dv_idx, Xdv)
    unseen = [k for k in dev_groups if k not in tr_groups]
    if unseen:
        log(f"warning: dev targets without training rows: {unseen} (predicted as the majority class)")
    majority = max(set(train.labels), key=train.labels.count)

    def make_lr(C: float, n_classes: int):
        if solver == "saga":
            return LogisticRegression(C=C, class_weight="balanced", max_iter=2000, solver="saga",
                                      random_state=0)
        lr = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, solver="liblinear",
                                random_state=0)
        # liblinear is binary-only in scikit-learn >= 1.8: multi-class = explicit one-vs-rest.
        return OneVsRestClassifier(lr) if n_classes > 2 else lr

    grid = []
    for C in SK_C_GRID:
        pred = [majority] * len(dev.labels)
        for key, (Xtr, ytr, dv_idx, Xdv) in feats.items():
            if not dv_idx:
                continue
            labs = sorted(set(ytr))
            if len(labs) == 1:
                p = [labs[0]] * len(dv_idx)
            else:
                p = make_lr(C, len(labs)).fit(Xtr, ytr).predict(Xdv)
            for i, lab in zip(dv_idx, p):
                pred[i] = str(lab)
        pc = per_class_from_predictions(dev.labels, pred, classes)
        sc = score_per_class(pc, task.is_stance)
        grid.append({"C": C, "score": headline(sc, task), "scores": sc, "per_class": pc,
                     "accuracy": accuracy(dev.labels, pred)})
        log(f"  sklearn {task.name} C={C}: {task.metric}={headline(sc, task):.4f}")
    best = max(grid, key=lambda g: g["score"])  # first best wins on ties
    return {
        "system": "sklearn",
        "params": {"C": best["C"], "solver": "saga" if solver == "saga" else "liblinear",
                   "per_target": task.is_stance},
        "score": best["score"],
        "scores": best["scores"],
        "accuracy": best["accuracy"],
        "per_class": best["per_class"],
        "grid": [{"C": g["C"], "score": g["score"]} for g in grid],
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
    files = {}
    for n, (key, tr_idx) in enumerate(tr_groups.items()):
        p = work / f"ft_{task.slug}_{n}.txt"
        ft_write_train(p, [train.texts[i] for i in tr_idx], [train.labels[i] for i in tr_idx], lab2id)
        files[key] = p
    dev_lines = [ft_clean(t) for t in dev.texts]
    grid = []
    for epoch in FT_EPOCH_GRID:
        for lr in FT_LR_GRID:
            pred = [majority] * len(dev.labels)
            try:
                for key, p in files.items():
                    dv_idx = dev_groups.get(key, [])
                    if not dv_idx:
                        continue
                    m = ft_train(p, epoch, lr)
                    for i, lab in zip(dv_idx, ft_predict(m, [dev_lines[i] for i in dv_idx], classes)):
                        pred[i] = lab
                    del m
            except Exception as e:  # e.g. "Encountered NaN" at high lr
                log(f"  fasttext {task.name} epoch={epoch} lr={lr}: failed ({e})")
                grid.append({"epoch": epoch, "lr": lr, "score": None, "error": str(e)})
                continue
            pc = per_class_from_predictions(dev.labels, pred, classes)
            sc = score_per_class(pc, task.is_stance)
            grid.append({"epoch": epoch, "lr": lr, "score": headline(sc, task), "scores": sc,
                         "per_class": pc, "accuracy": accuracy(dev.labels, pred)})
            log(f"  fasttext {task.name} epoch={epoch} lr={lr}: {task.metric}={headline(sc, task):.4f}")
    for p in files.values():
        p.unlink(missing_ok=True)
    ok = [g for g in grid if g["score"] is not None]
    if not ok:
        return {"system": "fasttext", "error": "every grid point failed", "score": None,
                "seconds": time.monotonic() - t0}
    best = max(ok, key=lambda g: g["score"])
    return {
        "system": "fasttext",
        "params": {"epoch": best["epoch"], "lr": best["lr"], "minn": 2, "maxn": 5, "wordNgrams": 2,
                   "dim": 100, "thread": 1, "seed": FT_SEED, "per_target": task.is_stance},
        "score": best["score"],
        "scores": best["scores"],
        "accuracy": best["accuracy"],
        "per_class": best["per_class"],
        "grid": [{"epoch": g["epoch"], "lr": g["lr"], "score": g["score"]} for g in grid],
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


def run_moderato(task: Task, exe: Path, train_csv: Path, dev_csv: Path, classes: list[str],
                 work: Path, timeout: float | None) -> dict:
    model = work / f"{task.slug}.model"
    report = work / f"{task.slug}_report"
    shutil.rmtree(report, ignore_errors=True)
    tgt = ["--target", task.target] if task.target else []
    train_cmd = [str(exe), "train", "--data", str(train_csv), "--dev", str(dev_csv),
                 "--label", task.label, *tgt, "--out", str(model)]
    eval_cmd = [str(exe), "eval", "--model", str(model), "--data", str(dev_csv),
                "--label", task.label, *tgt, "--report", str(report)]
    res: dict = {"system": "moderato", "score": None, "model": str(model),
                 "commands": [train_cmd, eval_cmd]}
    rc, out, secs = run_cmd(train_cmd, timeout)
    res["train_seconds"] = secs
    res["train_output_tail"] = out[-4000:]
    if rc != 0:
        res["error"] = f"train exited {rc}: {tail(out)}"
        return res
    rc, out, secs = run_cmd(eval_cmd, timeout)
    res["eval_seconds"] = secs
    if rc != 0:
        res["error"] = f"eval exited {rc}: {tail(out)}"
        return res
    mpath = report / "metrics.json"
    try:
        metrics = json.loads(mpath.read_text(encoding="utf-8"))
        per_class = metrics["per_class"]
        if not isinstance(per_class, dict) or not per_class:
            raise ValueError("per_class is empty or not an object")
    except Exception as e:
        res["error"] = f"cannot read {mpath}: {e}"
        return res
    got = {str(k) for k in per_class}
    if got != set(classes):
        log(f"warning: moderato per_class classes {sorted(got)} != task classes {classes}")
        res["class_mismatch"] = {"moderato": sorted(got), "task": classes}
    sc = score_per_class(per_class, task.is_stance)
    res.update({
        "score": headline(sc, task),
        "scores": sc,
        "per_class": per_class,
        "reported": {k: metrics.get(k) for k in ("label", "n", "macro_f1", "f_avg", "accuracy")},
    })
    # Cross-check our recomputation against the binary's own numbers (informational only).
    for k in ("macro_f1", "f_avg"):
        rep = metrics.get(k)
        mine = sc.get(k)
        if isinstance(rep, (int, float)) and mine is not None and abs(rep - mine) > 1e-3:
            log(f"note: moderato reports {k}={rep:.4f}, recomputed from per_class = {mine:.4f}")
    return res


# --------------------------------------------------------------------------
# Table


def fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def print_table(results: list[dict]) -> None:
    header = ["dataset", "label", "metric", "sklearn", "fasttext", "moderato", "best_peer",
              "moderato-best_peer"]
    rows = []
    for r in results:
        bp = r.get("best_peer")
        bp_s = "-" if bp is None else f"{bp:.4f}({'sk' if r['best_peer_name'] == 'sklearn' else 'ft'})"
        d = r.get("moderato_minus_best_peer")
        rows.append([r["dataset"], r["label"], r["metric"], fmt(r["sklearn"]), fmt(r["fasttext"]),
                     fmt(r["moderato"]), bp_s, "-" if d is None else f"{d:+.4f}"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    sys.stdout.flush()


def summarise(task: Task, sk: dict | None, ft: dict | None, mo: dict | None, n_train: int,
              n_dev: int, dropped: tuple[int, int], classes: list[str]) -> dict:
    vals = {"sklearn": sk and sk.get("score"), "fasttext": ft and ft.get("score")}
    peers = {k: v for k, v in vals.items() if v is not None}
    best_name = max(peers, key=peers.get) if peers else None
    best = peers.get(best_name) if best_name else None
    mscore = mo and mo.get("score")
    return {
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
                log("throughput: selecting fastText epoch/lr for olid/subtask_a on dev")
                dev = load_split(data_root / task.dataset / "dev.csv", task)
                classes = sorted(set(train.labels) | set(dev.labels))
                r = run_fasttext(task, train, dev, classes, work)
                ft_params = r.get("params")
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
                    help="fastText epoch,lr for the throughput model (default: olid/subtask_a's dev-tuned values "
                         "from this run, else tuned now)")
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
                    m_tr, m_dv = tr_path, dv_path
                    if args.max_rows:
                        m_tr = write_subset(tr_path, work / f"{task.slug}_train.csv", args.max_rows)
                        m_dv = write_subset(dv_path, work / f"{task.slug}_dev.csv", args.max_rows)
                    mo = run_moderato(task, exe, m_tr, m_dv, classes, work, args.moderato_timeout)
                    if mo.get("error"):
                        log(f"  moderato {task.name}: {mo['error']}")
                    else:
                        log(f"  moderato {task.name}: {task.metric}={mo['score']:.4f}")
                        if task == THROUGHPUT_FT_TASK:
                            moderato_olid_model = Path(mo["model"])
                elif not args.skip_moderato:
                    mo = {"system": "moderato", "score": None, "error": "binary not available"}
                results.append(summarise(task, sk, ft, mo, len(train.labels), len(dev.labels),
                                         (train.dropped, dev.dropped), classes))
            print_table(results)
            print_details(results)
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
    print("Chosen peer hyper-parameters (tuned on dev) and errors:")
    for r in results:
        d = r["details"]
        bits = []
        if d.get("sklearn") and d["sklearn"].get("params"):
            bits.append(f"sklearn C={d['sklearn']['params']['C']}")
        if d.get("fasttext"):
            if d["fasttext"].get("params"):
                p = d["fasttext"]["params"]
                bits.append(f"fastText epoch={p['epoch']} lr={p['lr']}")
            elif d["fasttext"].get("error"):
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
