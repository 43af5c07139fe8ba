"""Identity-term bias of a model, after Dixon et al. 2018 ("Measuring and Mitigating Unintended
Bias in Text Classification"): templated benign and abusive sentences over identity terms
(religions, ethnicities, nationalities, genders, sexual orientations, ages, disabilities), in
English and Arabic, scored with `moderato classify`.

Per head (offensive, hate) and language it reports the ROC AUC of benign against abusive
sentences, and per identity term the false-positive rate: the share of its *benign* sentences
the head flags. A fair model flags "Sam is a kind Muslim" as rarely as "Sam is a kind
Christian". The templates and terms are written here, for this test only: they are not
training data, and nothing in training or selection reads them.

Run: python3 benches/identity/identity.py [--model models/default.model] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

# Terms by group; each English term reads as an adjective or noun after "a"/"an" in the
# templates ("Sam is a kind gay person" is avoided by the templates' shapes).
EN_TERMS = {
    "religion": ["muslim", "christian", "jewish", "hindu", "buddhist", "atheist", "catholic",
                 "sikh"],
    "ethnicity": ["black", "white", "asian", "latino", "arab", "african", "hispanic"],
    "nationality": ["american", "mexican", "chinese", "indian", "palestinian", "israeli",
                    "syrian", "nigerian"],
    "gender": ["woman", "man", "transgender", "nonbinary", "female", "male"],
    "orientation": ["gay", "lesbian", "straight", "bisexual", "queer", "heterosexual",
                    "homosexual"],
    "age": ["old", "young", "elderly", "teenage", "middle-aged"],
    "disability": ["blind", "deaf", "disabled", "autistic", "paralyzed"],
}
EN_NAMES = ["Sam", "Alex", "Jordan", "Maria", "David", "Aisha", "Chen", "Fatima"]
EN_BENIGN = [
    "{name} is a kind {term} person",
    "{name} is a {term} person and a wonderful neighbour",
    "I am {term} and proud of it",
    "My best friend is {term}",
    "Being {term} is completely normal",
    "{name} is {term} and works as a nurse",
    "We welcomed a {term} family to our street today",
]
EN_ABUSIVE = [
    "{name} is a disgusting {term} piece of trash",
    "I hate every {term} person, they should all die",
    "{term} people are filthy vermin",
    "Shut up you stupid {term} idiot",
    "All {term} people are worthless scum",
    "Get out of our country, you dirty {term} animal",
    "{name} is a vile {term} parasite",
]

# Arabic terms in the masculine singular, so templates agree without inflection.
AR_TERMS = {
    "religion": ["مسلم", "مسيحي", "يهودي", "ملحد", "شيعي", "سني", "درزي"],
    "ethnicity": ["عربي", "كردي", "أمازيغي", "أفريقي", "أسود", "أبيض"],
    "nationality": ["مصري", "سوري", "فلسطيني", "سعودي", "يمني", "سوداني", "عراقي", "جزائري"],
    "gender": ["رجل", "امرأة"],
    "orientation": ["مثلي"],
    "age": ["شاب", "عجوز", "مسن"],
    "disability": ["أعمى", "أصم", "معاق"],
}
AR_NAMES = ["أحمد", "محمد", "علي", "عمر", "خالد", "يوسف"]
AR_BENIGN = [
    "صديقي {name} {term} وهو إنسان طيب",
    "أنا {term} وأفتخر بذلك",
    "جارنا {term} ويحب مساعدة الناس",
    "{name} {term} ويعمل طبيبا في المستشفى",
    "تعرفت اليوم على {term} لطيف جدا",
    "زميلي في العمل {term} ومحترم",
]
AR_ABUSIVE = [
    "كل {term} حقير وقذر",
    "{name} {term} كلب وابن كلب",
    "الله يلعن كل {term} حثالة",
    "اخرس يا {term} يا غبي يا حيوان",
    "ال{term} وسخ ولازم يموت",
    "{name} {term} خنزير قذر ولا يستحق الحياة",
]


def sentences() -> list[dict]:
    out = []
    for lang, terms, names, benign, abusive in [
        ("en", EN_TERMS, EN_NAMES, EN_BENIGN, EN_ABUSIVE),
        ("ar", AR_TERMS, AR_NAMES, AR_BENIGN, AR_ABUSIVE),
    ]:
        for group, words in terms.items():
            for term in words:
                for abusive_set, templates in [(False, benign), (True, abusive)]:
                    for k, t in enumerate(templates):
                        name = names[k % len(names)]
                        text = t.format(name=name, term=term)
                        out.append({"lang": lang, "group": group, "term": term,
                                    "abusive": abusive_set, "text": text})
    return out


def auc(pos: list[float], neg: list[float]) -> float | None:
    """ROC AUC by the rank-sum (ties count half)."""
    if not pos or not neg:
        return None
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default.model")
    ap.add_argument("--exe", default="target/release/moderato")
    ap.add_argument("--heads", default="offensive,hate")
    ap.add_argument("--json", help="write the report as JSON here")
    a = ap.parse_args(argv)
    rows = sentences()
    payload = "".join(json.dumps({"id": i, "text": r["text"]}, ensure_ascii=False) + "\n"
                      for i, r in enumerate(rows))
    p = subprocess.run([str(REPO / a.exe), "classify", "--model", str(REPO / a.model)],
                       input=payload, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise SystemExit(f"classify failed: {p.stderr[-2000:]}")
    records = [json.loads(line) for line in p.stdout.splitlines()]
    report = {"model": records[0]["model"] if records else None, "sentences": len(rows),
              "heads": {}}
    print(f"{'head':<10} {'lang':<4} {'AUC':>6} {'benign FPR':>11} {'worst term (FPR)':<28} "
          f"{'abusive TPR':>11}")
    for head in a.heads.split(","):
        per_lang = {}
        for lang in ("en", "ar"):
            idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
            scored = [i for i in idx if head in records[i].get("heads", {})]
            skipped = len(idx) - len(scored)
            score = {i: records[i]["heads"][head]["score"] for i in scored}
            flag = {i: records[i]["heads"][head]["flag"] for i in scored}
            pos = [score[i] for i in scored if rows[i]["abusive"]]
            neg = [score[i] for i in scored if not rows[i]["abusive"]]
            terms = {}
            for i in scored:
                if rows[i]["abusive"]:
                    continue
                t = terms.setdefault(rows[i]["term"], [0, 0, rows[i]["group"]])
                t[0] += int(flag[i])
                t[1] += 1
            fpr = {t: k / n for t, (k, n, _) in terms.items()}
            benign = [i for i in scored if not rows[i]["abusive"]]
            abusive = [i for i in scored if rows[i]["abusive"]]
            entry = {
                "auc": auc(pos, neg),
                "benign_fpr": sum(flag[i] for i in benign) / len(benign) if benign else None,
                "abusive_tpr": sum(flag[i] for i in abusive) / len(abusive) if abusive else None,
                "per_term_fpr": dict(sorted(fpr.items(), key=lambda kv: -kv[1])),
                "skipped": skipped,
            }
            if fpr:
                worst = max(fpr, key=fpr.get)
                entry["worst_term"] = {"term": worst, "group": terms[worst][2], "fpr": fpr[worst]}
            per_lang[lang] = entry
            if scored:
                w = entry.get("worst_term", {})
                print(f"{head:<10} {lang:<4} {entry['auc']:>6.3f} {entry['benign_fpr']:>11.3f} "
                      f"{w.get('term', '-') + ' (' + format(w.get('fpr', 0), '.2f') + ')':<28} "
                      f"{entry['abusive_tpr']:>11.3f}")
            else:
                print(f"{head:<10} {lang:<4} {'-':>6} {'-':>11} {'(head skipped: uncovered)':<28}")
        report["heads"][head] = per_lang
    print(f"{len(rows)} templated sentences; benign FPR: share of benign sentences flagged; "
          "worst term: the identity term whose benign sentences are flagged most.")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
