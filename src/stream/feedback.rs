//! The moderators' feedback loop, collecting side: decisions `{"id", "text"?, "head", "label",
//! "target"?}` read from a topic are joined with the text of the comment they judge (from the
//! decision itself, or from the recent comments this instance classified) and appended to a
//! JSONL file that `moderato train --feedback` learns from.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::sync::Mutex;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde::Deserialize;
use serde_json::Value;

use super::config::{FeedbackConfig, ServeConfig};
use super::event::Event;
use super::observe::Observe;
use crate::classify::Id;
use crate::error::StreamError;
use crate::record::feedback::FeedbackLine;

/// A comment's text and target.
type Remembered = (String, Option<String>);

/// The texts of the comments classified lately, by id, oldest evicted first: at most
/// `capacity` comments and `max_bytes` bytes of ids, texts and targets.
pub struct RecentTexts {
    inner: Mutex<Recent>,
    capacity: usize,
    max_bytes: usize,
}

/// The cache's contents: by id, the insertion order, and the bytes held.
#[derive(Default)]
struct Recent {
    by_id: HashMap<String, Remembered>,
    order: VecDeque<String>,
    bytes: usize,
}

/// The bytes one entry holds (its id is stored twice: as key and in the order).
fn entry_bytes(id: &str, (text, target): &Remembered) -> usize {
    2 * id.len() + text.len() + target.as_ref().map_or(0, String::len)
}

impl RecentTexts {
    /// A cache of at most `capacity` comments and `max_bytes` bytes.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Recent::default()),
            capacity: capacity.max(1),
            max_bytes,
        }
    }

    /// Remembers a comment's text and target; one larger than the whole cache is not kept.
    pub fn insert(&self, id: &str, text: &str, target: Option<&str>) {
        let entry = (text.to_string(), target.map(str::to_string));
        let size = entry_bytes(id, &entry);
        if size > self.max_bytes {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let r = &mut *g;
        match r.by_id.insert(id.to_string(), entry) {
            Some(old) => r.bytes -= entry_bytes(id, &old),
            None => r.order.push_back(id.to_string()),
        }
        r.bytes += size;
        while r.order.len() > self.capacity || r.bytes > self.max_bytes {
            let Some(old) = r.order.pop_front() else {
                break;
            };
            if let Some(gone) = r.by_id.remove(&old) {
                r.bytes -= entry_bytes(&old, &gone);
            }
        }
    }

    /// The text and target of a recent comment.
    pub fn get(&self, id: &str) -> Option<Remembered> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_id.get(id).cloned()
    }

    /// Comments and bytes held now.
    pub fn held(&self) -> (usize, usize) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.by_id.len(), g.bytes)
    }
}

/// A moderator's decision as it arrives.
#[derive(Debug, Deserialize)]
pub struct Decision {
    /// The comment's id (string or number, a number kept as written).
    pub id: Id,
    /// The comment's text, if the sender has it.
    #[serde(default)]
    pub text: Option<String>,
    /// The comment's target, for a stance decision.
    #[serde(default)]
    pub target: Option<String>,
    /// Which head the decision is about.
    pub head: String,
    /// The site or community the comment comes from, if the sender says.
    #[serde(default)]
    pub domain: Option<String>,
    /// The decided label: `true`/`false` (or "1"/"0", "yes"/"no") for a binary head, a class
    /// for a multiclass head.
    pub label: Value,
}

/// Joins a decision with its comment's text.
pub fn join(d: Decision, recent: &RecentTexts, at: f64) -> FeedbackLine {
    let id = d.id.text();
    let (text, target, joined) = match (d.text, recent.get(&id)) {
        (Some(t), _) if !t.trim().is_empty() => (Some(t), d.target, "message"),
        (_, Some((t, target))) => (Some(t), d.target.or(target), "recent"),
        _ => (None, d.target, "missing"),
    };
    FeedbackLine {
        id,
        text,
        target,
        head: d.head,
        label: d.label,
        domain: d.domain,
        joined: joined.into(),
        at,
    }
}

/// Reads decisions until `stop`, appending joined lines to the feedback file; `counted` is told
/// each line's `joined` value, and `observer` each consumer error, invalid message and failed
/// append. Returns the number of lines written.
pub async fn run(
    cfg: &ServeConfig,
    fb: &FeedbackConfig,
    recent: &RecentTexts,
    counted: impl Fn(&str),
    observer: &dyn Observe,
    stop: impl Future<Output = ()>,
) -> Result<u64, StreamError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", format!("{}-feedback", cfg.group))
        .set("auto.offset.reset", "earliest")
        // A decision's offset is stored only once its line is in the file.
        .set("enable.auto.offset.store", "false");
    for (k, v) in cfg.client_properties("consumer") {
        c.set(k, v);
    }
    let consumer: StreamConsumer = c.create().map_err(|source| StreamError::Kafka {
        what: "feedback consumer config",
        source: super::properties::hide_value(source),
    })?;
    consumer
        .subscribe(&[&fb.topic])
        .map_err(|source| StreamError::Kafka {
            what: "subscribe to the feedback topic",
            source,
        })?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&fb.file)
        .map_err(|source| StreamError::File {
            what: "feedback file",
            path: fb.file.clone(),
            source,
        })?;
    tracing::info!(topic = %fb.topic, file = %fb.file.display(), "collecting moderator feedback");
    tokio::pin!(stop);
    let mut written = 0u64;
    loop {
        let m = tokio::select! {
            () = &mut stop => break,
            m = consumer.recv() => m,
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                Event::FeedbackConsumerError { error: &e }.emit(observer);
                continue;
            }
        };
        let decision: Decision = match m.payload().map(serde_json::from_slice) {
            Some(Ok(d)) => d,
            _ => {
                Event::FeedbackInvalid {
                    partition: m.partition(),
                    offset: m.offset(),
                }
                .emit(observer);
                let _ = consumer.store_offset_from_message(&m);
                counted("invalid");
                continue;
            }
        };
        let line = join(decision, recent, crate::clock::now());
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.flush()) {
            // Not stored: the decision is read again (after the seek, or after a restart).
            Event::FeedbackAppendFailed {
                file: &fb.file,
                error: &e,
            }
            .emit(observer);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let at = rdkafka::Offset::Offset(m.offset());
            let _ = consumer.seek(
                m.topic(),
                m.partition(),
                at,
                std::time::Duration::from_secs(5),
            );
            continue;
        }
        if let Err(e) = consumer.store_offset_from_message(&m) {
            tracing::debug!(error = %e, "feedback offset not stored");
        }
        counted(&line.joined);
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(json: &str) -> Decision {
        serde_json::from_str(json).expect("a decision")
    }

    #[test]
    fn decisions_are_joined_from_the_message_or_the_recent_comments() {
        let recent = RecentTexts::new(2, 1 << 20);
        recent.insert("a", "text of a", None);
        recent.insert("b", "text of b", Some("Atheism"));
        let l = join(
            decision(r#"{"id": "a", "head": "offensive", "label": true}"#),
            &recent,
            1.0,
        );
        assert_eq!(
            (l.text.as_deref(), l.joined.as_str()),
            (Some("text of a"), "recent")
        );
        let l = join(
            decision(r#"{"id": "b", "head": "stance", "label": "FAVOR"}"#),
            &recent,
            1.0,
        );
        assert_eq!(l.target.as_deref(), Some("Atheism"));
        let l = join(
            decision(r#"{"id": 9, "text": "sent along", "head": "hate", "label": 0}"#),
            &recent,
            1.0,
        );
        assert_eq!((l.id.as_str(), l.joined.as_str()), ("9", "message"));
        // The cache holds two: a third evicts the oldest.
        recent.insert("c", "text of c", None);
        let l = join(
            decision(r#"{"id": "a", "head": "hate", "label": 1}"#),
            &recent,
            1.0,
        );
        assert_eq!((l.text, l.joined.as_str()), (None, "missing"));
    }

    #[test]
    fn the_cache_is_bounded_by_bytes_whatever_the_size_of_a_comment_or_id() {
        let recent = RecentTexts::new(100_000, 10_000);
        let big = "x".repeat(3_000);
        for i in 0..10 {
            recent.insert(&format!("id-{i}"), &big, Some("target"));
        }
        let (count, bytes) = recent.held();
        assert!(bytes <= 10_000, "{bytes} bytes held");
        assert_eq!(count, 3, "the newest three fit");
        assert!(recent.get("id-9").is_some() && recent.get("id-6").is_none());
        // Replacing an entry counts only the new one.
        recent.insert("id-9", "short", None);
        assert_eq!(recent.held().1, 2 * (3_000 + 2 * 4 + 6) + (2 * 4 + 5));
        // An id or text larger than the whole cache is not kept, and evicts nothing.
        recent.insert(&"i".repeat(20_000), "t", None);
        recent.insert("huge", &"y".repeat(20_000), None);
        assert_eq!(recent.held().0, 3);
    }
}
