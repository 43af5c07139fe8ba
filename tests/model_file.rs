//! The model file through the library API: a saved and reloaded model scores exactly like the
//! trained one, its checksum is what it claims, and damaged files are refused with an error
//! that says what is wrong and what to do.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::fixture;
use moderato::error::ModelError;
use moderato::model::file::{self, FORMAT_VERSION};
use moderato::model::{Model, Scratch};
use moderato::train::config::TrainConfig;
use sha2::{Digest, Sha256};

/// A binary head and a target-conditioned stance head over 2^12 buckets: trains in milliseconds.
fn toy_config() -> TrainConfig {
    let text = format!(
        r#"
name = "toy"
version = "test-1"

[featurizer]
hash_bits = 12

[solver]
c = [1.0, 10.0]

[[heads]]
name = "toxic"
kind = "binary"

[[heads]]
name = "stance"
kind = "multiclass"
classes = ["FAVOR", "AGAINST", "NONE"]
conditioned = true

[[datasets]]
name = "toy"
train = '{}'
dev = '{}'
target = "target"
[datasets.labels.toxic]
column = "label"
positive = ["toxic"]
negative = ["clean"]
[datasets.labels.stance]
column = "stance"
"#,
        fixture("toy_train.csv").display(),
        fixture("toy_dev.csv").display(),
    );
    toml::from_str(&text).expect("the toy training config parses")
}

/// The toy model as trained, never saved (trained once per test binary).
fn trained() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        moderato::train::train(&toy_config(), false)
            .expect("the toy model trains on the fixture")
            .model
    })
}

/// Saves a copy of the toy model into `dir` and returns (saved model, its path, the file bytes).
fn saved(dir: &Path) -> (Model, PathBuf, Vec<u8>) {
    let mut model = trained().clone();
    let path = dir.join("toy.model");
    file::save(&mut model, &path).expect("the toy model saves");
    let bytes = std::fs::read(&path).expect("the saved model is readable");
    (model, path, bytes)
}

/// Writes `bytes` as a model file in `dir` and loads it, expecting a refusal.
fn load_refused(dir: &Path, name: &str, bytes: &[u8]) -> ModelError {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("the damaged copy is written");
    match file::load(&path) {
        Ok(_) => panic!("{name}: a damaged model file was accepted"),
        Err(e) => e,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Byte offset of the weight table (after the 32-byte prefix and the JSON header).
fn weights_offset(bytes: &[u8]) -> usize {
    let header_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    32 + usize::try_from(header_len).expect("header length fits in usize")
}

const COMMENTS: &[(&str, Option<&str>)] = &[
    ("You stupid idiot, I love cats", Some("Cats")),
    ("Coffee tastes awful, I hate the smell", Some("القهوة")),
    (
        "The cafe serves coffee until noon on Sunday",
        Some("القهوة"),
    ),
    ("يا غبي، أحب القطط", Some("Cats")),
    ("أكره القهوة، مشروب سيء", Some("القهوة")),
    ("A comment about nothing in particular", None),
    ("I love dogs", Some("Dogs")),
];

#[test]
fn saved_model_scores_exactly_like_the_trained_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (saved, path, _) = saved(dir.path());
    let loaded = file::load(&path).expect("the saved model loads");

    assert_eq!(
        loaded.info, saved.info,
        "provenance survives the round trip"
    );
    assert_eq!(
        loaded.heads(),
        saved.heads(),
        "heads and calibration survive the round trip"
    );
    assert_eq!(loaded.featurizer().config(), saved.featurizer().config());
    assert!(
        loaded.table() == saved.table(),
        "weights were already rounded to f16 by train, so the table is bit-identical"
    );
    let (mut a, mut b) = (Scratch::default(), Scratch::default());
    for &(text, target) in COMMENTS {
        let before = trained().score(text, target, &mut a);
        let after = loaded.score(text, target, &mut b);
        assert_eq!(
            before, after,
            "same outcome for {text:?} (target {target:?})"
        );
    }
}

#[test]
fn save_records_a_non_empty_sha256_that_load_reports_too() {
    assert!(
        trained().sha256.is_empty(),
        "a never-saved model has no checksum"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (saved, path, _) = saved(dir.path());
    assert_eq!(
        saved.sha256.len(),
        64,
        "save records a hex SHA-256: {:?}",
        saved.sha256
    );
    let loaded = file::load(&path).expect("the saved model loads");
    assert_eq!(
        loaded.sha256, saved.sha256,
        "load reports the checksum save recorded"
    );
}

#[test]
fn file_ends_with_the_sha256_of_every_byte_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, _, bytes) = saved(dir.path());
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    assert_eq!(trailer, Sha256::digest(body).as_slice());
}

#[test]
fn model_sha256_is_the_sha256_of_the_whole_file() {
    // `Model::sha256` and the `model.sha256` of every output record are documented as the
    // SHA-256 of the model file: what `sha256sum default.model` prints.
    let dir = tempfile::tempdir().expect("temp dir");
    let (saved, path, bytes) = saved(dir.path());
    let file_sha = sha256_hex(&bytes);
    assert_eq!(
        saved.sha256, file_sha,
        "save: model.sha256 vs SHA-256 of the file"
    );
    let loaded = file::load(&path).expect("the saved model loads");
    assert_eq!(
        loaded.sha256, file_sha,
        "load: model.sha256 vs SHA-256 of the file"
    );
}

#[test]
fn flipped_weight_byte_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, _, mut bytes) = saved(dir.path());
    let start = weights_offset(&bytes);
    let at = start + (bytes.len() - 32 - start) / 2;
    bytes[at] ^= 0x01;
    let err = load_refused(dir.path(), "flipped.model", &bytes);
    assert!(matches!(err, ModelError::Checksum { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("corrupt"), "{msg}");
    assert!(msg.contains("flipped.model"), "names the file: {msg}");
    assert!(
        msg.contains("copy it again or retrain"),
        "says what to do: {msg}"
    );
}

#[test]
fn file_truncated_by_100_bytes_is_refused_as_truncated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, _, bytes) = saved(dir.path());
    let short = &bytes[..bytes.len() - 100];
    let err = load_refused(dir.path(), "short.model", short);
    match &err {
        ModelError::Truncated {
            expected, actual, ..
        } => {
            assert_eq!(
                *expected,
                bytes.len() as u64,
                "expected size is the full file"
            );
            assert_eq!(*actual, short.len() as u64);
        }
        other => panic!("expected a truncation error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains("copy it again"), "says what to do: {msg}");
}

#[test]
fn random_bytes_are_refused_as_not_a_moderato_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Deterministic pseudo-random bytes (xorshift64).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let err = load_refused(dir.path(), "noise.model", &noise);
    assert!(matches!(err, ModelError::BadMagic(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not a moderato model"), "{msg}");
    assert!(msg.contains("moderato train"), "says what to do: {msg}");
}

#[test]
fn text_file_is_refused_as_not_a_moderato_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = std::fs::read(fixture("toy_dev.csv")).expect("fixture is readable");
    let err = load_refused(dir.path(), "toy_dev.csv", &csv);
    assert!(matches!(err, ModelError::BadMagic(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not a moderato model"), "{msg}");
    assert!(msg.contains("toy_dev.csv"), "names the file: {msg}");
}

#[test]
fn empty_file_is_refused_as_not_a_moderato_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = load_refused(dir.path(), "empty.model", &[]);
    assert!(matches!(err, ModelError::BadMagic(_)), "{err:?}");
    assert!(err.to_string().contains("not a moderato model"), "{err}");
}

#[test]
fn magic_alone_is_refused_as_truncated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = load_refused(dir.path(), "magic.model", b"MODERATO\x01\x00\x00\x00");
    assert!(matches!(err, ModelError::Truncated { .. }), "{err:?}");
}

#[test]
fn other_format_version_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, _, mut bytes) = saved(dir.path());
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    // Re-seal the file so that only the version, not the checksum, can refuse it.
    let body_end = bytes.len() - 32;
    let digest = Sha256::digest(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&digest);
    let err = load_refused(dir.path(), "v99.model", &bytes);
    match &err {
        ModelError::Version {
            found, supported, ..
        } => {
            assert_eq!(*found, 99);
            assert_eq!(*supported, FORMAT_VERSION);
        }
        other => panic!("expected a version error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("version 99"),
        "names the file's version: {msg}"
    );
    assert!(
        msg.contains(&format!("versions 1 to {FORMAT_VERSION}")),
        "names the supported versions: {msg}"
    );
    assert!(msg.contains("retrain"), "says what to do: {msg}");
}

#[test]
fn missing_file_is_refused_with_an_io_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.model");
    let err = match file::load(&path) {
        Ok(_) => panic!("a missing file loaded"),
        Err(e) => e,
    };
    assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.model"), "{err}");
}

/// The saved toy model with its JSON header edited by `edit`, re-sealed (lengths and checksum
/// rewritten) so that only the loader's checks of the numbers inside can refuse it.
fn with_header(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (_, _, bytes) = saved(dir);
    let start = weights_offset(&bytes);
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[32..start]).expect("the header is JSON");
    edit(&mut header);
    let json = serde_json::to_vec(&header).expect("serializes");
    let mut out = bytes[..16].to_vec();
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&bytes[24..32]);
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[start..bytes.len() - 32]);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Loads re-sealed `bytes`, expecting an `Invalid` refusal, and returns its message.
fn invalid_reason(dir: &Path, name: &str, bytes: &[u8]) -> String {
    match load_refused(dir, name, bytes) {
        ModelError::Invalid { reason, .. } => reason,
        other => panic!("{name}: expected an invalid-model error, got {other:?}"),
    }
}

#[test]
fn a_non_finite_bias_or_domain_scale_inside_a_valid_checksum_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unedited = with_header(dir.path(), |_| {});
    std::fs::write(dir.path().join("same.model"), &unedited).expect("write");
    file::load(&dir.path().join("same.model")).expect("re-sealing alone changes nothing");
    // 1e39 is beyond f32: serde_json refuses it as out of range.
    let beyond = with_header(dir.path(), |h| {
        h["heads"][0]["bias"][0] = serde_json::json!(1e39);
    });
    load_refused(dir.path(), "beyond.model", &beyond);
    // 3e38 is a finite f32, but added to a margin or times a feature weight it overflows to
    // infinity, and the head's scores to NaN or a constant.
    let bias = with_header(dir.path(), |h| {
        h["heads"][0]["bias"][0] = serde_json::json!(3e38);
    });
    let reason = invalid_reason(dir.path(), "bias.model", &bias);
    assert!(
        reason.contains("`toxic`") && reason.contains("bias"),
        "{reason}"
    );
    let scales = with_header(dir.path(), |h| {
        h["heads"][0]["domain_scales"] = serde_json::json!([3e38, 1.0]);
    });
    let reason = invalid_reason(dir.path(), "scales.model", &scales);
    assert!(
        reason.contains("`toxic`") && reason.contains("domain scale"),
        "{reason}"
    );
}

#[test]
fn a_model_version_unfit_for_a_header_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, version) in [
        ("long.model", "v".repeat(10_000)),
        ("newline.model", "v1\nX-Injected: yes".to_string()),
        ("empty.model", String::new()),
    ] {
        let bytes = with_header(dir.path(), |h| {
            h["info"]["version"] = version.clone().into()
        });
        let reason = invalid_reason(dir.path(), name, &bytes);
        assert!(reason.contains("model version"), "{name}: {reason}");
        assert!(
            reason.len() < 400,
            "{name}: the message quotes a prefix only: {reason}"
        );
    }
    let ok = with_header(dir.path(), |h| {
        h["info"]["version"] = "2026.12.01-rc.1+b7".into()
    });
    std::fs::write(dir.path().join("ok.model"), &ok).expect("write");
    file::load(&dir.path().join("ok.model")).expect("an ordinary version loads");
}

#[test]
fn a_file_over_the_size_cap_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.model");
    let f = std::fs::File::create(&path).expect("create");
    std::io::Write::write_all(&mut &f, b"MODERATO").expect("write");
    // Sparse: no disk and no time, and a loader that read it whole would need 1 GiB of memory.
    f.set_len((1 << 30) + 1).expect("extend");
    let started = std::time::Instant::now();
    let err = match file::load(&path) {
        Ok(_) => panic!("a file over the cap loaded"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains("huge.model") && msg.contains("over the limit"),
        "{msg}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "it was read"
    );
}

/// The toy model without its stance head: same binary head, other heads.
fn toxic_only() -> Model {
    let mut cfg = toy_config();
    cfg.heads.retain(|h| h.name == "toxic");
    for d in &mut cfg.datasets {
        d.labels.retain(|name, _| name == "toxic");
    }
    moderato::train::train(&cfg, false)
        .expect("the one-head toy model trains")
        .model
}

#[test]
fn a_reload_with_other_heads_is_refused_and_the_old_model_keeps_serving() {
    use moderato::stream::reload::ModelSlot;
    let dir = tempfile::tempdir().expect("temp dir");
    let (model, path, _) = saved(dir.path());
    let sha = model.sha256.clone();
    let slot = ModelSlot::new(model, Some(path.clone()));
    file::save(&mut toxic_only(), &path).expect("saves over the serving file");
    let err = slot.reload().expect_err("a reload with other heads");
    let msg = err.to_string();
    assert!(msg.contains("stance") && msg.contains("restart"), "{msg}");
    assert_eq!(slot.current().model_ref.sha256, sha, "the old model serves");
    assert_eq!(
        slot.reload_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The same heads with new weights: accepted.
    let mut retrained = trained().clone();
    retrained.info.version = "test-2".into();
    file::save(&mut retrained, &path).expect("saves");
    let r = slot.reload().expect("a reload with the same heads");
    assert_eq!(r.version, "test-2");
    // The same file again (a SIGHUP after the file watcher's reload): not loaded twice.
    let reloads = || slot.reloads.load(std::sync::atomic::Ordering::Relaxed);
    let counted = reloads();
    let again = slot.reload().expect("the served file");
    assert_eq!(again.sha256, r.sha256);
    assert_eq!(reloads(), counted, "an unchanged file is no reload");
}
