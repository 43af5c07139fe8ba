//! One Kafka message in, one record out: a labelled JSON record for the output topic, or a dead
//! letter carrying the original bytes and the reason. Pure functions, no Kafka client.

use serde_json::Map;

use super::config::{InputFormat, ServeConfig};
use super::fit::fit;
pub use super::message::{Destination, Header, Inbound, Outbound, Summary};
use crate::classify::{Comment, HeadResult, Id, ModelRef};
use crate::error::InputError;
use crate::model::{Model, Scratch};
use crate::record::{classify, Record};

pub use crate::record::Source;

impl Summary {
    fn of(record: &Record, comment: &Comment, model: &Model) -> Self {
        let mut out = Summary {
            id: record.id.text(),
            preview: crate::lang::char_prefix(&comment.text, 280).to_string(),
            lang: record.script().code(),
            ..Summary::default()
        };
        for (i, head) in model.heads().iter().enumerate() {
            match record.heads.get(&head.name) {
                Some(HeadResult::Binary { flag, score }) => out.scores.push((i, *score, *flag)),
                Some(HeadResult::Multiclass {
                    label,
                    scores,
                    target: Some(target),
                }) => {
                    let p = scores.get(label).copied().unwrap_or(0.0);
                    out.stance = Some((i, target.clone(), label.clone(), p));
                }
                _ => {}
            }
        }
        out
    }
}

/// Header naming the model version on every output record.
pub const MODEL_VERSION_HEADER: &str = "moderato-model-version";
/// Header naming the instance that produced a record.
pub const INSTANCE_HEADER: &str = "moderato-instance";
/// Dead-letter header: the reason code (`not_utf8`, `not_json`, `no_text`, ...).
pub const ERROR_HEADER: &str = "moderato-error";

/// Decodes a payload into a comment, as it came (the input policy is applied by [`process`]).
pub fn decode(msg: &Inbound, cfg: &ServeConfig) -> Result<Comment, InputError> {
    if let Some(bad) = &msg.bad_header {
        return Err(InputError::BadHeader(bad.clone()));
    }
    let payload = msg.payload.as_deref().ok_or(InputError::NoPayload)?;
    let size = msg.whole.as_ref().map_or(payload.len(), |w| w.length);
    if size > cfg.max_payload_bytes {
        return Err(InputError::TooLarge {
            size,
            limit: cfg.max_payload_bytes,
        });
    }
    let comment = match cfg.input_format {
        InputFormat::Json => Comment::parse(payload)?,
        InputFormat::Text => {
            let text =
                std::str::from_utf8(payload).map_err(|e| InputError::NotUtf8(e.valid_up_to()))?;
            if text.trim().is_empty() {
                return Err(InputError::EmptyText);
            }
            let s = &msg.source;
            Comment {
                id: Id::Text(format!("{}/{}/{}", s.topic, s.partition, s.offset)),
                text: text.to_string(),
                target: None,
                domain: None,
                extra: Map::new(),
            }
        }
    };
    Ok(comment)
}

/// Turns one message into the record to produce: its labels, or its dead letter; either fits
/// in [`ServeConfig::max_record_bytes`] (see [`super::fit`]).
pub fn process(
    msg: &Inbound,
    cfg: &ServeConfig,
    model: &Model,
    model_ref: &ModelRef,
    scratch: &mut Scratch,
) -> Outbound {
    match decode(msg, cfg) {
        Ok(mut comment) => {
            let policy = cfg.input_policy();
            let record = classify(model, model_ref, &policy, &mut comment, scratch, 0)
                .with_source(msg.source.clone());
            let mut summary = Summary::of(&record, &comment, model);
            // Id-less comments are not remembered: a decision could not name them.
            if cfg.feedback.is_some() && !record.id.is_null() {
                summary.full = Some((comment.text, comment.target));
            }
            // Sized for the usual record (about the input plus the heads) in one allocation.
            let mut payload = Vec::with_capacity(msg.size() + 1024);
            if let Err(e) = serde_json::to_writer(&mut payload, &record) {
                return dead_letter(msg, &InputError::Internal(e.to_string()), cfg);
            }
            let mut out = Outbound {
                destination: Destination::Output,
                key: msg.key.clone(),
                payload,
                headers: vec![
                    (
                        MODEL_VERSION_HEADER.into(),
                        Some(model_ref.version.clone().into_bytes()),
                    ),
                    (
                        INSTANCE_HEADER.into(),
                        Some(cfg.instance.clone().into_bytes()),
                    ),
                ],
                source: msg.source.clone(),
                summary: Some(summary),
                reason: None,
            };
            let limit = cfg.max_record_bytes();
            if fit(&mut out, limit, None) {
                out
            } else {
                let size = super::fit::size(&out);
                dead_letter(msg, &InputError::RecordTooLarge { size, limit }, cfg)
            }
        }
        Err(e) => dead_letter(msg, &e, cfg),
    }
}

/// Like [`process`], but a panic while classifying (a bug) dead-letters the message with reason
/// `internal` instead of stopping the service on it at every restart.
pub fn process_guarded(
    msg: Inbound,
    cfg: &ServeConfig,
    model: &Model,
    model_ref: &ModelRef,
    scratch: &mut Scratch,
) -> Outbound {
    guarded(&msg, cfg, scratch, |msg, scratch| {
        process(msg, cfg, model, model_ref, scratch)
    })
}

/// Runs `work` on `msg`; a panic in it dead-letters the message (reason `internal`) and logs
/// where it came from, never the panic's message.
fn guarded(
    msg: &Inbound,
    cfg: &ServeConfig,
    scratch: &mut Scratch,
    work: impl FnOnce(&Inbound, &mut Scratch) -> Outbound,
) -> Outbound {
    let run = std::panic::AssertUnwindSafe(|| work(msg, scratch));
    match std::panic::catch_unwind(run) {
        Ok(out) => out,
        Err(_) => {
            // The panic's own message is never logged or written: it can quote the comment.
            tracing::error!(
                partition = msg.source.partition,
                offset = msg.source.offset,
                "classification panicked; message dead-lettered (the panic's message is withheld)"
            );
            *scratch = Scratch::default();
            dead_letter(msg, &InputError::Internal(PANIC_WITHHELD.into()), cfg)
        }
    }
}

/// What a dead letter and the log say of a panic instead of its message.
pub const PANIC_WITHHELD: &str =
    "the classifier panicked (its message is withheld: it may quote the comment)";

/// The line the binary's panic hook logs: where the panic happened and on which thread, never
/// its message (a message like `byte index 5 is not a char boundary; it is inside 'x' of
/// \`…\`` quotes the text being sliced).
pub fn panic_report(info: &std::panic::PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed");
    match info.location() {
        Some(at) => format!(
            "thread '{name}' panicked at {}:{}:{} (message withheld: it may quote input)",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("thread '{name}' panicked (message withheld: it may quote input)"),
    }
}

/// The dead letter of a message: original key, bytes and headers, plus the reason and source;
/// cut to fit [`ServeConfig::max_record_bytes`] if it must be (see [`super::fit`]).
pub fn dead_letter(msg: &Inbound, error: &InputError, cfg: &ServeConfig) -> Outbound {
    let s = &msg.source;
    let mut headers = msg.headers.clone();
    let text = |k: &str, v: String| (k.to_string(), Some(v.into_bytes()));
    headers.extend([
        text(ERROR_HEADER, error.code().to_string()),
        text("moderato-error-message", error.to_string()),
        text("moderato-source-topic", s.topic.clone()),
        text("moderato-source-partition", s.partition.to_string()),
        text("moderato-source-offset", s.offset.to_string()),
        text(INSTANCE_HEADER, cfg.instance.clone()),
    ]);
    if let Some(ts) = s.timestamp {
        headers.push(text("moderato-source-timestamp", ts.to_string()));
    }
    let mut out = Outbound {
        destination: Destination::DeadLetter,
        key: msg.key.clone(),
        payload: msg.payload.clone().unwrap_or_default(),
        headers,
        source: msg.source.clone(),
        summary: None,
        reason: Some(error.code()),
    };
    let limit = cfg.max_record_bytes();
    if !fit(&mut out, limit, msg.whole.as_ref()) {
        tracing::warn!(
            partition = s.partition,
            offset = s.offset,
            "dead letter over the record limit even cut; the broker may refuse it"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(payload: &[u8]) -> Inbound {
        Inbound {
            source: Source {
                topic: "comments".into(),
                partition: 2,
                offset: 7,
                timestamp: Some(1_700_000_000_000),
            },
            key: Some(b"thread-9".to_vec()),
            payload: Some(payload.to_vec()),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
            bad_header: None,
            whole: None,
        }
    }

    fn cfg() -> ServeConfig {
        let mut c = ServeConfig::with_brokers("localhost:1").expect("valid");
        c.max_text_chars = 5;
        c.max_payload_bytes = 100;
        c
    }

    #[test]
    fn text_format_takes_the_payload_and_names_it_by_its_coordinates() {
        let mut c = cfg();
        c.input_format = InputFormat::Text;
        let comment = decode(&inbound(b"hello"), &c).expect("valid");
        assert_eq!(comment.id, Id::from("comments/2/7"));
        assert_eq!(
            decode(&inbound(b"   "), &c).unwrap_err(),
            InputError::EmptyText
        );
    }

    #[test]
    fn each_bad_payload_gets_its_reason() {
        let c = cfg();
        let big = vec![b'x'; 101];
        let mut tomb = inbound(b"");
        tomb.payload = None;
        for (msg, code) in [
            (inbound(b"\xff{"), "not_utf8"),
            (inbound(b"{oops"), "not_json"),
            (inbound(b"{\"id\":1}"), "no_text"),
            (inbound(b"{\"text\":\"\"}"), "empty_text"),
            (inbound(&big), "too_large"),
            (tomb, "no_payload"),
        ] {
            assert_eq!(decode(&msg, &c).unwrap_err().code(), code);
        }
    }

    #[test]
    fn an_unreadable_header_dead_letters_a_valid_comment_and_null_values_survive() {
        let mut msg = inbound(b"{\"text\": \"fine\"}");
        msg.headers.push(("empty".into(), None));
        msg.bad_header = Some("header 1's key is not UTF-8 (bytes ff)".into());
        let err = decode(&msg, &cfg()).unwrap_err();
        assert_eq!(err.code(), "bad_header");
        let dl = dead_letter(&msg, &err, &cfg());
        assert!(dl.headers.contains(&("empty".into(), None)));
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_or(Ok(0), |mut v| {
                v.extend_from_slice(buf);
                Ok(buf.len())
            })
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_that_quotes_the_comment_is_dead_lettered_without_its_message() {
        const MARKER: &str = "comment-marker-7f3a";
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let payload = format!("{{\"text\": \"{MARKER}\"}}");
        let msg = inbound(payload.as_bytes());
        // The binary's panic hook says where, not what.
        let reported = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let report = std::sync::Arc::clone(&reported);
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut r) = report.lock() {
                r.push_str(&panic_report(info));
            }
        }));
        let out = tracing::subscriber::with_default(subscriber, || {
            guarded(&msg, &cfg(), &mut Scratch::default(), |m, _| {
                let text = String::from_utf8_lossy(m.payload.as_deref().unwrap_or_default());
                panic!("cannot slice {text}")
            })
        });
        std::panic::set_hook(hook);
        let log = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
        assert!(log.contains("classification panicked"), "{log}");
        assert!(!log.contains(MARKER), "the log quotes the comment: {log}");
        let reported = reported.lock().map(|r| r.clone()).unwrap_or_default();
        assert!(
            reported.contains("panicked at src/stream/record.rs"),
            "{reported}"
        );
        assert!(
            !reported.contains(MARKER),
            "the panic report quotes the comment: {reported}"
        );
        assert_eq!(out.reason, Some("internal"));
        for (k, v) in &out.headers {
            let v = String::from_utf8_lossy(v.as_deref().unwrap_or_default());
            assert!(!v.contains(MARKER), "header {k} quotes the comment: {v}");
        }
        assert_eq!(
            out.payload,
            payload.as_bytes(),
            "the dead letter keeps the bytes"
        );
    }

    #[test]
    fn dead_letter_keeps_bytes_key_and_headers_and_names_the_source() {
        let msg = inbound(b"{oops");
        let err = decode(&msg, &cfg()).unwrap_err();
        let dl = dead_letter(&msg, &err, &cfg());
        assert_eq!(dl.destination, Destination::DeadLetter);
        assert_eq!(dl.payload, b"{oops");
        assert_eq!(dl.key.as_deref(), Some(&b"thread-9"[..]));
        let h = |name: &str| {
            dl.headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(h("trace").as_deref(), Some("abc"));
        assert_eq!(h(ERROR_HEADER).as_deref(), Some("not_json"));
        assert_eq!(h("moderato-source-partition").as_deref(), Some("2"));
        assert_eq!(h("moderato-source-offset").as_deref(), Some("7"));
    }
}
