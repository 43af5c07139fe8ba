"""Google's own Perspective client (google-api-python-client, unmodified) against `moderato api`.

    python tests/perspective_client.py [MODERATO_BIN]

The binary is argv[1], else $MODERATO_BIN, else target/release/moderato; the model is
models/default.model (run from the repository root). It starts `moderato api` on a free loopback
port with a temporary key file and feedback file, builds the client the way Perspective's
documentation does (from the server's discovery document) and checks scores, Perspective's
error types, UTF-16 span offsets, suggestscore's feedback line and the key check. `scripts/test`
runs it in a virtualenv with tests/perspective_client.requirements.txt. Exits non-zero on any
failure, after a one-line summary.
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

from googleapiclient import discovery
from googleapiclient.errors import HttpError

BIN = os.environ.get("MODERATO_BIN", "target/release/moderato")
KEY = "client-test-key"
LISTENING = "moderato api listening on "

# Sentences of the long comments. Each has at least 140 characters and no punctuation inside, so
# the server's sentence splitter (chunks of >= 140 characters cut at . ! ? ؟ , ; ...) makes one
# span of each; the emoji are two UTF-16 code units each, so byte or code-point offsets fail.
ENGLISH_SENTENCES = [
    "I read the whole piece twice 😀 and I still think the council made the right call about "
    "the new bike lanes on the main road near the old market 🚲 where kids walk to school.",
    "My neighbours disagree with me and they told the reporter so 🙄 but nobody in this thread "
    "has shown a single number about accidents before and after the lanes were painted!",
    "So please bring data to the next public meeting instead of shouting at each other 🤝 and "
    "let the people who actually ride there every morning say what works for them.",
]
ARABIC_SENTENCES = [
    "قرأت المقال كله وأعتقد أن الكاتب محق في أن المجلس البلدي تأخر كثيرا في إصلاح الطرق "
    "القديمة قرب السوق وأن السكان يستحقون خدمات أفضل من هذه بكثير 😡 في كل الأحياء.",
    "لكن لماذا لا يذكر المقال أي أرقام عن الميزانية التي صرفت خلال السنوات الماضية ولماذا "
    "لا يسأل الصحفي المسؤولين عن خططهم للعام القادم بدلا من الاكتفاء بالشكوى؟",
]


def start_server(binary, keys, feedback):
    """Starts `moderato api`; returns (process, base URL) once it prints its address."""
    proc = subprocess.Popen(
        [binary, "api", "--http", "127.0.0.1:0", "--model", "models/default.model",
         "--api-keys", keys, "--feedback-file", feedback],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn"})
    line = proc.stdout.readline().strip()
    if not line.startswith(LISTENING):
        proc.kill()
        raise RuntimeError(f"moderato api did not start: {line!r}")
    return proc, line[len(LISTENING):]


def client(base, key):
    """The Perspective client exactly as Google documents it, pointed at `base`."""
    return discovery.build(
        "commentanalyzer", "v1alpha1", developerKey=key,
        discoveryServiceUrl=f"{base}/$discovery/rest?version=v1alpha1",
        static_discovery=False, cache_discovery=False)


def request(text, *attributes, **extra):
    return {"comment": {"text": text},
            "requestedAttributes": {a: {} for a in attributes}, **extra}


class PerspectiveClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        keys = os.path.join(cls.dir.name, "keys")
        cls.feedback = os.path.join(cls.dir.name, "feedback.jsonl")
        with open(keys, "w") as f:
            f.write(f"# the test's key\n{KEY}\n")
        cls.proc, cls.base = start_server(BIN, keys, cls.feedback)
        cls.comments = client(cls.base, KEY).comments()

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=10)
        cls.dir.cleanup()

    def analyze(self, body):
        return self.comments.analyze(body=body).execute()

    def summary(self, response, attribute):
        return response["attributeScores"][attribute]["summaryScore"]["value"]

    def refused(self, body):
        """(HTTP status, errorType) of a request the server must refuse."""
        with self.assertRaises(HttpError) as caught:
            self.analyze(body)
        error = json.loads(caught.exception.content)["error"]
        return caught.exception.resp.status, error["details"][0]["errorType"]

    def test_english_scores(self):
        attributes = ("TOXICITY", "IDENTITY_ATTACK", "INSULT")
        rude = self.analyze(request("You are a worthless idiot and your opinions are garbage",
                                    *attributes, languages=["en"]))
        polite = self.analyze(request("Thanks for the clear explanation of the new bus timetable",
                                      *attributes))
        for response in (rude, polite):
            self.assertEqual(sorted(response["attributeScores"]), sorted(attributes))
            for a in attributes:
                self.assertTrue(0.0 <= self.summary(response, a) <= 1.0, (a, response))
        self.assertEqual(rude["languages"], ["en"])
        self.assertGreater(self.summary(rude, "TOXICITY"), self.summary(polite, "TOXICITY"))
        self.assertGreater(self.summary(rude, "INSULT"), self.summary(polite, "INSULT"))

    def test_arabic_scores_and_the_english_only_insult_head(self):
        text = "انت حقير وكلامك قذر يا وسخ"
        response = self.analyze(request(text, "TOXICITY", "IDENTITY_ATTACK", "PROFANITY"))
        for a in ("TOXICITY", "IDENTITY_ATTACK", "PROFANITY"):
            self.assertTrue(0.0 <= self.summary(response, a) <= 1.0, (a, response))
        self.assertEqual(self.refused(request(text, "INSULT")),
                         (400, "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"))

    def test_unknown_attribute(self):
        self.assertEqual(self.refused(request("see you at the meeting", "THREAT")),
                         (400, "ATTRIBUTE_NOT_SUPPORTED"))

    def check_spans(self, sentences):
        text = " ".join(sentences)
        self.assertGreater(len(text), 300)
        self.assertTrue(all(len(s) >= 140 for s in sentences))
        response = self.analyze(request(text, "TOXICITY", spanAnnotations=True))
        spans = response["attributeScores"]["TOXICITY"]["spanScores"]
        units = text.encode("utf-16-le")
        pieces = [units[2 * s["begin"]:2 * s["end"]].decode("utf-16-le") for s in spans]
        self.assertEqual(pieces, [s.strip() for s in sentences])
        previous_end = 0
        for s in spans:
            self.assertLessEqual(previous_end, s["begin"])
            self.assertLess(s["begin"], s["end"])
            self.assertTrue(0.0 <= s["score"]["value"] <= 1.0, s)
            previous_end = s["end"]
        self.assertLessEqual(previous_end, len(units) // 2)

    def test_spans_are_utf16_offsets_of_sentences(self):
        with self.subTest("English with emoji"):
            self.check_spans(ENGLISH_SENTENCES)
        with self.subTest("Arabic"):
            self.check_spans(ARABIC_SENTENCES)

    def test_suggestscore_becomes_a_feedback_line(self):
        body = {"comment": {"text": "You are a worthless idiot"},
                "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1}}},
                "languages": ["en"], "communityId": "Coral:https://x",
                "clientToken": "comment:42"}
        response = self.comments.suggestscore(body=body).execute()
        self.assertEqual(response["clientToken"], "comment:42")
        with open(self.feedback) as f:
            lines = [json.loads(line) for line in f]
        self.assertIn((("domain", "Coral:https://x"), ("id", "42"), ("label", True)),
                      [tuple((k, line.get(k)) for k in ("domain", "id", "label"))
                       for line in lines])

    def test_a_wrong_key_is_refused(self):
        wrong = client(self.base, "not-" + KEY).comments()
        with self.assertRaises(HttpError) as caught:
            wrong.analyze(body=request("hello there", "TOXICITY")).execute()
        self.assertEqual(caught.exception.resp.status, 403)


def main():
    global BIN
    if len(sys.argv) > 1:
        BIN = sys.argv[1]
    log = io.StringIO()
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(PerspectiveClient)
    result = unittest.TextTestRunner(stream=log, verbosity=2).run(suite)
    if not result.wasSuccessful():
        sys.stderr.write(log.getvalue())
    failed = len(result.failures) + len(result.errors)
    print(f"perspective_client.py: {result.testsRun} tests, {failed} failed "
          f"(google-api-python-client against {BIN})")
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
