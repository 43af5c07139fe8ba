"""How many benign sentences each English identity term needs (Dixon et al. 2018's balancing):
the count that brings the term's share of offensive rows in OLID + Davidson (train splits,
`../shared/data`) down to the overall share. training/identity/generate.py carries the result
as EN_EXTRA_BENIGN; rerun this when the training sets change.

Run: python3 training/identity/balance.py [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "../shared/data"))
    a = ap.parse_args(argv)
    root = Path(a.data_root)
    rows = [(r["text"].lower(), r["subtask_a"] == "OFF")
            for r in csv.DictReader(open(root / "olid/train.csv", encoding="utf-8"))]
    rows += [(r["text"].lower(), r["class"] in ("0", "1"))
             for r in csv.DictReader(open(root / "davidson2017/train.csv", encoding="utf-8"))]
    overall = sum(y for _, y in rows) / len(rows)
    need = {}
    for term in generate.EN_TERMS:
        pat = re.compile(r"\b" + re.escape(term) + r"\b")
        pos = sum(1 for x, y in rows if y and pat.search(x))
        neg = sum(1 for x, y in rows if not y and pat.search(x))
        n = math.ceil(pos / overall - (pos + neg) - 1e-9) if pos else 0
        if n > 0:
            need[term] = n
    print(f"overall offensive share {overall:.3f} over {len(rows)} rows")
    print("EN_EXTRA_BENIGN =", dict(sorted(need.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
