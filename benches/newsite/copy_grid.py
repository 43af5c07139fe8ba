"""The prototype that chose the site feature copy's two constants (src/train/site_copy.rs:
LOGIT_SCALE = 0.2, i.e. the logit divided by 5, and C = 3), reproducible.

For each set: the skip-one model of benches/newsite (trained without the set; pass --work and
--skip-model) scores the set's *train* rows with `moderato classify`. 3,000 train rows are set
aside to score on; N decisions are drawn from the rest. A logistic regression over scikit-learn
character n-grams of the decisions, beside the model's logit divided by `s`, is fit for each
(C, s); its threshold is chosen on 5-fold out-of-fold scores of the decisions. Printed: the mean
macro-F1 on the 3,000 rows over 5 draws, beside a threshold alone. No dev row is read.

The prototype's features are scikit-learn's TF-IDF character n-grams, not the model's hashed
ones, so it chose the constants' scale, not their last digit.

  benches/peers/.venv/bin/python benches/newsite/copy_grid.py --set olid --head offensive \
      --positive OFF --column subtask_a --skip-model target/newsite/skip-olid-....model
"""
import argparse
import csv
import json
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

REPO = Path(__file__).resolve().parents[2]


def macro(y, p):
    return f1_score(y, p, average="macro")


def best_threshold(y, z):
    return max(np.quantile(z, np.linspace(0.01, 0.99, 99)), key=lambda t: macro(y, z >= t))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", required=True)
    ap.add_argument("--column", required=True)
    ap.add_argument("--head", required=True)
    ap.add_argument("--positive", required=True, help="comma-separated positive labels")
    ap.add_argument("--skip-model", required=True)
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--exe", default=str(REPO / "target" / "release" / "moderato"))
    ap.add_argument("--sizes", default="300,1000")
    a = ap.parse_args()

    rows = list(csv.DictReader(open(Path(a.data_root) / a.set / "train.csv", encoding="utf-8")))
    rows = [r for r in rows if r["text"].strip()]
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        inp.write_text("".join(json.dumps({"id": str(i), "text": r["text"]}, ensure_ascii=False)
                               + "\n" for i, r in enumerate(rows)))
        subprocess.run([a.exe, "classify", "--model", a.skip_model, "--input", str(inp),
                        "--output", str(out)], check=True, stderr=subprocess.DEVNULL)
        scored = [json.loads(line) for line in out.read_text().splitlines()]
    p = np.array([s["heads"].get(a.head, {}).get("score", 0.5) for s in scored]).clip(1e-4, 1 - 1e-4)
    logit = np.log(p / (1 - p))
    texts = [r["text"] for r in rows]
    y = np.array([r[a.column] in a.positive.split(",") for r in rows])
    order = list(range(len(rows)))
    random.Random(99).shuffle(order)
    held, pool = order[:3000], order[3000:]
    ht, hl, hy = [texts[i] for i in held], logit[held], y[held]
    grid = [(c, s) for c in (1, 3, 10, 30) for s in (2.0, 5.0, 20.0)]
    for n in [int(x) for x in a.sizes.split(",")]:
        res = {}
        for seed in range(5):
            idx = random.Random(seed).sample(pool, n)
            X, L, Y = [texts[i] for i in idx], logit[idx], y[idx]
            res.setdefault("threshold", []).append(macro(hy, hl >= best_threshold(Y, L)))
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
            A, H = vec.fit_transform(X), vec.transform(ht)
            for c, s in grid:
                A2 = hstack([csr_matrix(L[:, None] / s), A]).tocsr()
                H2 = hstack([csr_matrix(hl[:, None] / s), H]).tocsr()
                lr = LogisticRegression(C=c, max_iter=3000)
                k = min(5, int(Y.sum()), int((~Y).sum()))
                oof = cross_val_predict(lr, A2, Y, cv=StratifiedKFold(k, shuffle=True, random_state=0),
                                        method="decision_function")
                t = best_threshold(Y, oof)
                res.setdefault(f"C={c} s={s:g}", []).append(macro(hy, lr.fit(A2, Y).decision_function(H2) >= t))
        print(f"{a.set} {a.head}, {n} decisions: " + ", ".join(
            f"{k} {np.mean(v):.3f}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
