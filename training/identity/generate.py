"""Writes training/identity/train.csv: templated sentences over identity terms, for the default
model's training (Dixon et al. 2018, "Measuring and Mitigating Unintended Bias in Text
Classification": add non-toxic examples that mention identity terms, so that a term used mostly
in abuse in the training sets stops counting as abuse by itself).

Labels (column `label`):
  benign       a neutral or friendly sentence that mentions the term   offensive no, hate no
  insult       an insult at one person that mentions the term          offensive yes
  group        an attack on everyone who has the identity              offensive yes, hate yes

About two benign sentences per abusive one, so the abusive ones keep the templates' frame from
reading as benign. The templates, names and insult words here are not those of the evaluation,
benches/identity/identity.py (checked by tests/identity.rs); most identity terms are shared, as
mitigating those terms is the point, and a few on each side are not. The config marks the set
`augment = true`: its rows train the shared features only, and no calibration, threshold or
cross-validation score reads them.

Run: python3 training/identity/generate.py   (deterministic; rewrites the CSV)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "train.csv"

EN_TERMS = [
    # religion
    "muslim", "christian", "jewish", "hindu", "buddhist", "atheist", "catholic", "sikh",
    "mormon", "protestant",
    # ethnicity
    "black", "white", "asian", "latino", "arab", "african", "hispanic", "native american",
    # nationality
    "american", "mexican", "chinese", "indian", "palestinian", "israeli", "syrian", "nigerian",
    "pakistani", "iranian", "russian", "korean", "somali",
    # gender
    "transgender", "nonbinary", "female", "male", "trans",
    # sexual orientation
    "gay", "lesbian", "straight", "bisexual", "queer", "heterosexual", "homosexual",
    # age
    "old", "young", "elderly", "teenage", "middle-aged",
    # disability
    "blind", "deaf", "disabled", "autistic", "paralyzed", "wheelchair-using",
]
EN_NAMES = ["Taylor", "Morgan", "Riley", "Omar", "Priya", "Lucas", "Nadia", "Kenji"]

EN_BENIGN = [
    "{name} is {a} {term} engineer who loves hiking",
    "My neighbour {name} is {term}",
    "As {a} {term} person, I found this article interesting",
    "The {term} community organized a charity run this weekend",
    "I met {a} {term} teacher at the conference yesterday",
    "Our new colleague is {term} and very helpful",
    "There are many {term} students at the university",
    "{name}, who is {term}, won the science prize",
    "The article interviews several {term} voters about the election",
    "{name} is {term} and plays the violin beautifully",
    "My grandmother's doctor is {term}",
    "{term} people deserve the same rights as everyone else",
    "The {term} author wrote a moving book about her childhood",
    "Thank you {name}, you are a great {term} role model",
]
EN_INSULT = [
    "{name} is a pathetic {term} moron",
    "Nobody wants you here, you {term} loser",
    "{name} is a dumb {term} clown, shut your mouth",
    "What an ugly {term} freak {name} is",
]
EN_GROUP = [
    "{term} people are subhuman garbage",
    "Every {term} is a rat and should be thrown out",
    "{term} people are a disease on this country",
    "Kick every {term} out, they do not belong here",
]

AR_TERMS = [
    # religion
    "مسلم", "مسيحي", "يهودي", "ملحد", "شيعي", "سني", "درزي", "قبطي", "إيزيدي",
    # ethnicity
    "عربي", "كردي", "أمازيغي", "أفريقي", "أسود", "أبيض", "تركماني",
    # nationality
    "مصري", "سوري", "فلسطيني", "سعودي", "يمني", "سوداني", "عراقي", "جزائري", "مغربي", "تونسي",
    "ليبي", "أردني", "لبناني", "إيراني",
    # sexual orientation
    "مثلي",
    # age
    "شاب", "عجوز", "مسن",
    # disability
    "أعمى", "أصم", "معاق", "كفيف",
]
AR_NAMES = ["سامي", "حسن", "كريم", "طارق", "ماجد", "ياسر"]

AR_BENIGN = [
    "التقيت بشخص {term} في المؤتمر وتحدثنا طويلا",
    "جاري {term} ويدعونا دائما إلى العشاء",
    "هذا الكاتب {term} وكتبه رائعة",
    "أخي {name} {term} ونحن نحبه كثيرا",
    "المواطن ال{term} له حقوق مثل الجميع",
    "{name} {term} ويعمل مهندسا في شركة كبيرة",
    "شكرا لك يا {name} أنت {term} رائع",
    "قرأت مقالا عن حياة طالب {term} متفوق",
    "زارنا صديق {term} من مدينة أخرى",
    "أستاذي {term} ويشرح الدروس بصبر",
]
AR_INSULT = [
    "{name} {term} تافه وجبان",
    "يا {term} يا جاهل يا أحمق",
    "{name} {term} منافق وكذاب ولا يستحي",
]
AR_GROUP = [
    "كل {term} منافق وكذاب",
    "اطردوا كل {term} من البلد فلا مكان لهم بيننا",
    "ال{term} أغبياء ولا يفهمون شيئا",
]


def article(term: str) -> str:
    return "an" if term[0] in "aeiou" else "a"


def rows() -> list[dict]:
    out = []
    for lang, terms, names, groups in [
        ("en", EN_TERMS, EN_NAMES, [("benign", EN_BENIGN), ("insult", EN_INSULT),
                                     ("group", EN_GROUP)]),
        ("ar", AR_TERMS, AR_NAMES, [("benign", AR_BENIGN), ("insult", AR_INSULT),
                                     ("group", AR_GROUP)]),
    ]:
        for ti, term in enumerate(terms):
            for label, templates in groups:
                for k, t in enumerate(templates):
                    name = names[(ti + k) % len(names)]
                    text = t.format(name=name, term=term, a=article(term))
                    text = text[0].upper() + text[1:] if lang == "en" else text
                    out.append({"text": text, "label": label, "lang": lang, "term": term})
    return out


def main() -> int:
    data = rows()
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label", "lang", "term"])
        w.writeheader()
        w.writerows(data)
    print(f"wrote {len(data)} rows to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
