//! Scoring throughput of the shipped default model: one ~200-character comment through
//! normalize + featurize + score (English and Arabic), the same over 1,000 different comments
//! (so the 16 MB weight table is not all in cache), and the normalizer and the featurizer alone.
//!
//! `cargo bench --bench score` (about a minute). Like tantivy's analyzer benches, the setup
//! asserts that the featurizer really produces the features it should, so a bench cannot
//! silently measure an empty pipeline.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use moderato::features::Scratch as FeatureScratch;
use moderato::model::{file, HeadOutcome, Model, Scratch};
use moderato::normalize::Normalizer;

/// The allocator the `moderato` binary runs with (src/main.rs), so these figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical English reader comment (about 200 characters).
const ENGLISH: &str = "Honestly this article misses the point. The council approved the new bus lanes last spring, \
and traffic on Main Street has only gotten worse since then. Maybe ask the people who actually live here next time?";

/// A typical Arabic reader comment (about 200 characters).
const ARABIC: &str = "مقال ممتاز، لكن الكاتب نسي أن أسعار الخبز ارتفعت مرتين هذا العام بينما الرواتب لم تتغير منذ \
سنوات. نتمنى من المسؤولين أن يستمعوا لصوت المواطن البسيط قبل اتخاذ أي قرار جديد يخص الدعم والضرائب. شكرا";

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.model");
        file::load(&path).unwrap_or_else(|e| panic!("bench needs the default model: {e}"))
    })
}

/// Checks that `text` yields a non-trivial, stable feature set and returns its size.
///
/// The bucket counts must add up to the number of n-grams the (allocating, independent)
/// `Featurizer::grams` path lists, and counting twice with a reused scratch must agree.
fn expected_features(model: &Model, text: &str) -> usize {
    let featurizer = model.featurizer();
    let mut scratch = FeatureScratch::default();
    featurizer.count(text, &mut scratch);
    let distinct = scratch.features.len();
    let total: usize = scratch.features.iter().map(|c| usize::from(c.count)).sum();
    let grams = featurizer.grams(text).len();
    assert!(distinct > 0, "no features for {text:?}");
    assert_eq!(
        total, grams,
        "bucket counts add up to the n-grams of {text:?}"
    );
    assert!(
        grams >= text.chars().count(),
        "{grams} n-grams for {} characters: the featurizer emits too little",
        text.chars().count()
    );
    featurizer.count(
        "something else entirely, to dirty the scratch",
        &mut scratch,
    );
    featurizer.count(text, &mut scratch);
    assert_eq!(
        scratch.features.len(),
        distinct,
        "feature count is stable for {text:?}"
    );
    distinct
}

/// 1,000 different comments, half English, half Arabic, built deterministically.
fn corpus() -> Vec<String> {
    const EN_OPEN: [&str; 7] = [
        "Honestly,",
        "To be fair,",
        "As a local resident,",
        "With respect,",
        "Frankly,",
        "I have to say",
        "After reading this twice,",
    ];
    const EN_TOPIC: [&str; 11] = [
        "the new bus lanes",
        "the school budget",
        "the stadium project",
        "the rise in water prices",
        "the election results",
        "the hospital waiting times",
        "the plan for the old harbour",
        "the tax on small shops",
        "the road works on Main Street",
        "the new recycling rules",
        "the library opening hours",
    ];
    const EN_CLAIM: [&str; 5] = [
        "will cost far more than the council admits",
        "were decided without asking a single resident",
        "are the best news this town has had in years",
        "deserve a much closer look from the reporters",
        "only help people who already have plenty",
    ];
    const EN_END: [&str; 4] = [
        "Who is going to pay for it in the end?",
        "Thanks for covering this story so carefully.",
        "I will remember this at the next election.",
        "Please follow up on it next month.",
    ];
    const AR_OPEN: [&str; 7] = [
        "بصراحة،",
        "مع احترامي،",
        "كمواطن من المدينة،",
        "للأسف،",
        "في رأيي،",
        "بعد قراءة المقال،",
        "الحقيقة أن",
    ];
    const AR_TOPIC: [&str; 11] = [
        "مشروع الطريق الجديد",
        "ميزانية المدارس",
        "ارتفاع أسعار الخبز",
        "نتائج الانتخابات",
        "طوابير المستشفى",
        "ضريبة المحلات الصغيرة",
        "مشروع الميناء القديم",
        "قرار رفع الدعم",
        "انقطاع الكهرباء المتكرر",
        "أزمة السكن عند الشباب",
        "مواعيد المكتبة العامة",
    ];
    const AR_CLAIM: [&str; 5] = [
        "سيكلف أكثر بكثير مما يقوله المسؤولون",
        "تقرر دون أن يسأل أحد رأي السكان",
        "أفضل خبر سمعناه منذ سنوات طويلة",
        "يحتاج إلى تحقيق أعمق من الصحفيين",
        "لا يفيد إلا من يملكون المال أصلا",
    ];
    const AR_END: [&str; 4] = [
        "من سيدفع الثمن في النهاية؟",
        "شكرا على تغطية الموضوع بهذه الدقة.",
        "سنتذكر هذا في الانتخابات القادمة.",
        "نرجو متابعة القضية الشهر المقبل.",
    ];
    let comments: Vec<String> = (0..1000usize)
        .map(|i| {
            let (open, topic, claim, end) = (i / 2 % 7, i / 14 % 11, i / 154 % 5, i % 4);
            if i % 2 == 0 {
                format!(
                    "{} {} {}. Comment number {i}: {}",
                    EN_OPEN[open], EN_TOPIC[topic], EN_CLAIM[claim], EN_END[end]
                )
            } else {
                format!(
                    "{} {} {}. التعليق رقم {i}: {}",
                    AR_OPEN[open], AR_TOPIC[topic], AR_CLAIM[claim], AR_END[end]
                )
            }
        })
        .collect();
    let distinct: HashSet<&String> = comments.iter().collect();
    assert_eq!(
        distinct.len(),
        comments.len(),
        "the batch comments are all different"
    );
    comments
}

fn score_one(c: &mut Criterion) {
    let model = model();
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [("english", ENGLISH), ("arabic", ARABIC)] {
        let chars = text.chars().count();
        assert!(
            (180..=230).contains(&chars),
            "{name} comment has {chars} characters, not about 200"
        );
        expected_features(model, text);
        let mut scratch = Scratch::default();
        let outcomes = model.score(text, None, &mut scratch);
        assert_eq!(outcomes.len(), model.heads().len(), "one outcome per head");
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, HeadOutcome::Binary { .. })),
            "binary heads are scored"
        );
        group.bench_function(name, |b| {
            b.iter(|| model.score(black_box(text), None, &mut scratch));
        });
    }
    group.finish();
}

/// A long comment (over `LONG_COMMENT` characters): the whole text and each sentence chunk
/// are scored, the chunks from the text's one normalization and hashing.
fn score_long(c: &mut Criterion) {
    let model = model();
    let text = format!("{ARABIC} {ENGLISH} {ARABIC}");
    assert!(text.chars().count() > moderato::model::LONG_COMMENT);
    assert!(moderato::model::chunks(&text, moderato::model::CHUNK_CHARS).len() > 1);
    let mut scratch = Scratch::default();
    let mut group = c.benchmark_group("score_long");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mixed_600", |b| {
        b.iter(|| model.score(black_box(&text), None, &mut scratch));
    });
    group.finish();
}

fn score_batch(c: &mut Criterion) {
    let model = model();
    let comments = corpus();
    let features: Vec<usize> = comments
        .iter()
        .map(|t| expected_features(model, t))
        .collect();
    let total: usize = features.iter().sum();
    assert!(
        total > 100 * comments.len(),
        "{total} features over the batch is too few"
    );
    let mut group = c.benchmark_group("score_batch");
    group.throughput(Throughput::Elements(comments.len() as u64));
    group.sampling_mode(SamplingMode::Flat);
    let mut scratch = Scratch::default();
    group.bench_function("mixed_1000", |b| {
        b.iter(|| {
            for text in &comments {
                black_box(model.score(black_box(text), None, &mut scratch));
            }
        });
    });
    group.finish();
}

fn normalize_only(c: &mut Criterion) {
    let normalizer = Normalizer::new(model().featurizer().config().normalize.clone());
    let mut group = c.benchmark_group("normalize_into");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [("english", ENGLISH), ("arabic", ARABIC)] {
        let mut out = String::new();
        normalizer.normalize_into(text, &mut out);
        let expected = out.clone();
        assert!(
            expected.chars().count() * 10 >= text.chars().count() * 9,
            "normalization keeps the text: {expected:?}"
        );
        normalizer.normalize_into(text, &mut out);
        assert_eq!(out, expected, "normalization is stable");
        group.bench_function(name, |b| {
            b.iter(|| normalizer.normalize_into(black_box(text), &mut out));
        });
    }
    group.finish();
}

fn count_only(c: &mut Criterion) {
    let featurizer = model().featurizer();
    let mut group = c.benchmark_group("featurizer_count");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [("english", ENGLISH), ("arabic", ARABIC)] {
        let expected = expected_features(model(), text);
        let mut scratch = FeatureScratch::default();
        group.bench_function(name, |b| {
            b.iter(|| featurizer.count(black_box(text), &mut scratch));
        });
        // Empty when a filter skipped this bench; otherwise the last timed run's features.
        assert!(
            scratch.features.is_empty() || scratch.features.len() == expected,
            "the benchmarked runs produced the expected features"
        );
    }
    group.finish();
}

/// The record's `lang` field: whatlang on the same comments, beside the scoring it follows.
fn language_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("language");
    group.throughput(Throughput::Elements(1));
    for (name, text, code) in [("english", ENGLISH, "en"), ("arabic", ARABIC, "ar")] {
        assert_eq!(
            moderato::lang::language(text),
            Some(code),
            "{name} is identified"
        );
        group.bench_function(name, |b| {
            b.iter(|| moderato::lang::language(black_box(text)));
        });
    }
    group.finish();
}

/// One whole output record as the stream makes it (`stream::record::process`: decode the JSON,
/// apply the input policy, score, language, serialize), on the stream bench's own comments
/// (`examples/comments.jsonl`, cycled there): the service's CPU per comment without Kafka.
fn record_examples(c: &mut Criterion) {
    use moderato::classify::ModelRef;
    use moderato::stream::record::{process, Destination, Inbound, Source};
    use moderato::stream::ServeConfig;
    let model = model();
    let model_ref = ModelRef::of(model);
    let cfg = ServeConfig::with_brokers("localhost:1").expect("default config");
    let messages: Vec<Inbound> = include_str!("../examples/comments.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .enumerate()
        .map(|(i, text)| Inbound {
            source: Source {
                topic: "comments".into(),
                partition: 0,
                offset: i as i64,
                timestamp: Some(1_700_000_000_000),
            },
            key: Some(format!("thread-{i}").into_bytes()),
            payload: Some(
                serde_json::json!({"id": i, "text": text})
                    .to_string()
                    .into_bytes(),
            ),
            headers: Vec::new(),
            bad_header: None,
            whole: None,
        })
        .collect();
    assert!(messages.len() >= 8, "the example comments are read");
    let mut scratch = Scratch::default();
    for m in &messages {
        let out = process(m, &cfg, model, &model_ref, &mut scratch);
        assert_eq!(out.destination, Destination::Output, "{:?}", out.reason);
    }
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("examples", |b| {
        b.iter_batched(
            || messages.clone(),
            |batch| {
                for m in batch {
                    black_box(process(&m, &cfg, model, &model_ref, &mut scratch));
                }
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// `LANG_AGREEMENT_DATA=DIR cargo bench --bench score -- language_agreement`: how often the
/// record's `lang` (the fast path) is what whatlang alone says, on the `text` column of every
/// DIR/*/train.csv (e.g. `../shared/data`; train rows only), and the time each takes. Prints
/// nothing without the variable.
fn language_agreement(_c: &mut Criterion) {
    let Some(dir) = std::env::var_os("LANG_AGREEMENT_DATA") else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the data directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("train.csv"))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    let (mut all, mut same, mut exact) = (0usize, 0usize, 0usize);
    let (mut t_ours, mut t_theirs) = (Duration::ZERO, Duration::ZERO);
    for path in files {
        let mut reader = csv::Reader::from_path(&path).expect("a CSV file");
        let col = reader
            .headers()
            .expect("a header row")
            .iter()
            .position(|h| h == "text")
            .expect("a text column");
        let texts: Vec<String> = reader
            .records()
            .filter_map(|r| r.ok())
            .filter_map(|r| r.get(col).map(str::to_string))
            .collect();
        let (mut agree, mut equal) = (0usize, 0usize);
        for t in &texts {
            let started = std::time::Instant::now();
            let ours = black_box(moderato::lang::language(t));
            t_ours += started.elapsed();
            let started = std::time::Instant::now();
            let theirs = black_box(moderato::lang::language_whatlang(t));
            t_theirs += started.elapsed();
            agree += usize::from(ours == theirs);
            let [a, b] = moderato::lang::guesses(t);
            equal += usize::from(a == b);
        }
        println!(
            "{}: lang agrees on {agree} of {} texts, (language, confidence) identical on {equal}",
            path.display(),
            texts.len()
        );
        all += texts.len();
        same += agree;
        exact += equal;
    }
    println!(
        "all: lang agrees on {same} of {all} ({:.4}%), guesses identical on {exact}; \
         time {:.1} µs per text (whatlang alone {:.1} µs)",
        100.0 * same as f64 / all.max(1) as f64,
        t_ours.as_secs_f64() * 1e6 / all.max(1) as f64,
        t_theirs.as_secs_f64() * 1e6 / all.max(1) as f64
    );
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = score_one, score_long, score_batch, normalize_only, count_only, language_only, record_examples, language_agreement
}
criterion_main!(benches);
