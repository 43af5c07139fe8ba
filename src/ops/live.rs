//! The live view behind the dashboard: 10-second buckets of the label stream (throughput, flags
//! per head, dead letters, scripts, stance targets), totals per model, the latest comments,
//! and a server-sent-event feed. `serve` fills it from its batches, `monitor` from a label topic.
//! One short lock per batch; readers copy what they need out of it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::drift::{assess, DriftConfig, DriftStatus};
use super::state::{
    DashboardState, FeedRecord, FeedStance, LanguageCount, ModelState, Series, Totals, Window,
};
use crate::clock::now;

/// Bucket length, in seconds.
pub const BUCKET_SECS: i64 = 10;
/// Comments kept for a page that connects late.
const FEED_LEN: usize = 50;
/// Most live events sent to browsers per second (the rest are counted, not shown).
const EVENTS_PER_SEC: f64 = 20.0;

/// One event of the live feed, shared by every page that receives it (one copy in memory).
#[derive(Clone, Debug)]
pub struct FeedEvent {
    /// Its place in this process's feed, from 1 (the SSE event id).
    pub seq: u64,
    /// The event as JSON.
    pub json: Arc<str>,
}

/// One labelled record or dead letter, borrowed from whoever saw it.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// Comment id.
    pub id: &'a str,
    /// Text (a prefix), when known.
    pub text: Option<&'a str>,
    /// Script code.
    pub lang: &'a str,
    /// Binary heads: (index into the batch's head names, score, flagged).
    pub scores: &'a [(usize, f32, bool)],
    /// Stance: (target, label, probability).
    pub stance: Option<(&'a str, &'a str, f32)>,
    /// Dead-letter reason, for a dead letter.
    pub dead: Option<&'a str>,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    start: i64,
    total: u64,
    dead: u64,
    /// Per head: comments flagged, and comments the head scored (its rate's denominator: a
    /// record from a model without the head does not dilute it).
    flagged: Vec<u64>,
    scored: Vec<u64>,
    /// Comments flagged by at least one head.
    any: u64,
    /// Per script: (comments, flagged by any head).
    languages: BTreeMap<String, (u64, u64)>,
    /// Per stance target: label → comments.
    stance: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Default)]
struct State {
    heads: Vec<String>,
    buckets: VecDeque<Bucket>,
    consumed: u64,
    labelled: u64,
    dead: u64,
    flagged_comments: u64,
    dead_by_reason: BTreeMap<String, u64>,
    models_seen: BTreeMap<String, u64>,
    feed: VecDeque<FeedEvent>,
    /// Events published so far.
    published: u64,
    tokens: f64,
    refilled: f64,
    lag: BTreeMap<String, i64>,
    assigned: Vec<i32>,
}

/// The live view.
pub struct Live {
    state: Mutex<State>,
    events: broadcast::Sender<FeedEvent>,
    /// `serve` or `monitor`.
    pub mode: &'static str,
    /// Instance name.
    pub instance: String,
    /// Start time (seconds since the epoch).
    pub started_at: f64,
    /// Drift settings.
    pub drift: DriftConfig,
}

impl Live {
    /// An empty view.
    pub fn new(mode: &'static str, instance: String, drift: DriftConfig) -> Self {
        Self {
            state: Mutex::new(State::default()),
            events: broadcast::channel(256).0,
            mode,
            instance,
            started_at: now(),
            drift,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live events, for server-sent events.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.events.subscribe()
    }

    /// The latest events, oldest first, for a page that just connected.
    pub fn recent(&self) -> Vec<FeedEvent> {
        self.lock().feed.iter().cloned().collect()
    }

    /// The latest events and a receiver of every later one, taken together (events are sent
    /// under the same lock), so a page that connects misses none and sees none twice.
    pub fn feed(&self) -> (Vec<FeedEvent>, broadcast::Receiver<FeedEvent>) {
        let s = self.lock();
        (s.feed.iter().cloned().collect(), self.events.subscribe())
    }

    /// Records one batch at time `t`: `heads` names the binary heads `Item::scores` index.
    pub fn record(&self, t: f64, heads: &[String], model_version: &str, items: &[Item<'_>]) {
        let mut s = self.lock();
        // Only the heads that score items here are binary heads (a stance head never does).
        let used = used_heads(heads.len(), items);
        let map: Vec<Option<usize>> = heads
            .iter()
            .zip(used)
            .map(|(h, u)| u.then(|| s.head_index(h)))
            .collect();
        let keep = self.keep_buckets();
        s.consumed += items.len() as u64;
        *s.models_seen.entry(model_version.to_string()).or_default() +=
            items.iter().filter(|i| i.dead.is_none()).count() as u64;
        let width = s.heads.len();
        let bucket = s.bucket(t, keep, width);
        let (mut total, mut dead, mut any) = (0u64, 0u64, 0u64);
        let (mut flagged, mut scored) = (vec![0u64; width], vec![0u64; width]);
        for item in items {
            if item.dead.is_some() {
                dead += 1;
                continue;
            }
            total += 1;
            any += u64::from(item.scores.iter().any(|s| s.2));
            for &(h, _, flag) in item.scores {
                if let Some(&Some(j)) = map.get(h) {
                    scored[j] += 1;
                    flagged[j] += u64::from(flag);
                }
            }
        }
        let b = &mut s.buckets[bucket];
        b.total += total;
        b.dead += dead;
        b.any += any;
        for j in 0..width {
            b.flagged[j] += flagged[j];
            b.scored[j] += scored[j];
        }
        for item in items {
            s.tally(bucket, item);
        }
        self.publish(&mut s, t, heads, model_version, items);
    }

    fn keep_buckets(&self) -> usize {
        let secs = (self.drift.window_secs + self.drift.baseline_secs).max(15 * 60) as i64;
        (secs / BUCKET_SECS + 2) as usize
    }

    /// Picks which items go to the browsers (dead letters and flagged ones first) within the
    /// event budget, and sends them.
    fn publish(&self, s: &mut State, t: f64, heads: &[String], version: &str, items: &[Item<'_>]) {
        s.tokens = (s.tokens + (t - s.refilled) * EVENTS_PER_SEC).min(2.0 * EVENTS_PER_SEC);
        s.refilled = t;
        let interesting = |i: &&Item<'_>| i.dead.is_some() || i.scores.iter().any(|x| x.2);
        let first: Vec<&Item<'_>> = items.iter().filter(interesting).collect();
        let rest = items.iter().filter(|i| !interesting(i));
        for item in first.into_iter().chain(rest) {
            if s.tokens < 1.0 {
                break;
            }
            s.tokens -= 1.0;
            s.published += 1;
            let event = FeedEvent {
                seq: s.published,
                json: feed_json(&feed_record(t, heads, version, item)),
            };
            if s.feed.len() == FEED_LEN {
                s.feed.pop_front();
            }
            s.feed.push_back(event.clone());
            let _ = self.events.send(event);
        }
    }

    /// The binary heads seen so far.
    pub fn heads(&self) -> Vec<String> {
        self.lock().heads.clone()
    }

    /// Sets the consumer lag of every `topic/partition`.
    pub fn set_lag(&self, lag: BTreeMap<String, i64>) {
        self.lock().lag = lag;
    }

    /// Sets the assigned partitions.
    pub fn set_assigned(&self, partitions: &[i32]) {
        self.lock().assigned = partitions.to_vec();
    }

    /// Drift verdicts for every head at time `t`.
    pub fn drift_at(&self, t: f64) -> Vec<DriftStatus> {
        let s = self.lock();
        let current = (t as i64).div_euclid(BUCKET_SECS) * BUCKET_SECS;
        let per_window = (self.drift.window_secs as i64 / BUCKET_SECS).max(1);
        // Window index 0 is the one that ends with the current bucket.
        let window_of = |start: i64| (current - start) / (per_window * BUCKET_SECS);
        let windows = (self.drift.baseline_secs as i64 / (per_window * BUCKET_SECS)) + 1;
        let mut out = Vec::new();
        for (h, name) in s.heads.iter().enumerate() {
            let mut sums = vec![(0u64, 0u64); windows as usize];
            for b in &s.buckets {
                let w = window_of(b.start);
                if (0..windows).contains(&w) {
                    let e = &mut sums[w as usize];
                    e.0 += b.scored.get(h).copied().unwrap_or(0);
                    e.1 += b.flagged.get(h).copied().unwrap_or(0);
                }
            }
            if let Some(status) = assess(name, sums[0], &sums[1..], &self.drift) {
                out.push(status);
            }
        }
        out
    }

    /// Everything the dashboard shows, as of time `t` (the serving `model` and its reload
    /// failures are the caller's).
    pub fn state(&self, t: f64, model: Option<ModelState>, reload_failures: u64) -> DashboardState {
        let drift = self.drift_at(t);
        let s = self.lock();
        let current = (t as i64).div_euclid(BUCKET_SECS) * BUCKET_SECS;
        let since = |secs: i64| s.buckets.iter().filter(move |b| b.start > current - secs);
        let throughput = {
            // A sliding 10-second window: the current bucket plus the part of the previous one
            // still inside it (so the figure neither dips at a bucket's start nor reads 0 in a
            // process younger than one bucket).
            let total_at = |start: i64| {
                s.buckets
                    .iter()
                    .find(|b| b.start == start)
                    .map_or(0.0, |b| b.total as f64)
            };
            let width = BUCKET_SECS as f64;
            let into = (t - current as f64).clamp(0.0, width);
            let counted =
                total_at(current) + total_at(current - BUCKET_SECS) * (1.0 - into / width);
            counted / (t - self.started_at).clamp(1.0, width)
        };
        let share = |k: u64, n: u64| if n > 0 { k as f64 / n as f64 } else { 0.0 };
        let windows = [("1m", 60), ("5m", 300), ("15m", 900)]
            .into_iter()
            .map(|(name, secs)| {
                let total: u64 = since(secs).map(|b| b.total).sum();
                let rates = s
                    .heads
                    .iter()
                    .enumerate()
                    .map(|(h, head)| {
                        let count = |v: &Vec<u64>| v.get(h).copied().unwrap_or(0);
                        let k: u64 = since(secs).map(|b| count(&b.flagged)).sum();
                        let n: u64 = since(secs).map(|b| count(&b.scored)).sum();
                        (head.clone(), share(k, n))
                    })
                    .collect();
                let any = share(since(secs).map(|b| b.any).sum(), total);
                (name.to_string(), Window { total, rates, any })
            })
            .collect();
        let buckets: Vec<&Bucket> = since(900).collect();
        let flagged = s
            .heads
            .iter()
            .enumerate()
            .map(|(h, head)| {
                let v = buckets
                    .iter()
                    .map(|b| b.flagged.get(h).copied().unwrap_or(0))
                    .collect();
                (head.clone(), v)
            })
            .collect();
        // Languages and stance over the last 15 minutes: what is happening now, not since start.
        let mut languages: BTreeMap<String, LanguageCount> = BTreeMap::new();
        let mut stance: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for b in &buckets {
            for (l, (n, k)) in &b.languages {
                let e = languages.entry(l.clone()).or_default();
                e.total += n;
                e.flagged += k;
            }
            for (target, labels) in &b.stance {
                let e = stance.entry(target.clone()).or_default();
                for (label, n) in labels {
                    *e.entry(label.clone()).or_default() += n;
                }
            }
        }
        DashboardState {
            mode: self.mode.to_string(),
            instance: self.instance.clone(),
            started_at: self.started_at,
            now: t,
            model,
            models_seen: s.models_seen.clone(),
            heads: s.heads.clone(),
            totals: Totals {
                consumed: s.consumed,
                labelled: s.labelled,
                dead_letters: s.dead,
                flagged: s.flagged_comments,
            },
            throughput,
            dead_letter_rate: since(60).map(|b| b.dead).sum::<u64>() as f64 / 60.0,
            dead_letters_by_reason: s.dead_by_reason.clone(),
            lag: s.lag.clone(),
            lag_total: s.lag.values().filter(|v| **v > 0).sum(),
            assigned_partitions: s.assigned.clone(),
            windows,
            series: Series {
                t: buckets.iter().map(|b| b.start).collect(),
                total: buckets.iter().map(|b| b.total).collect(),
                dead: buckets.iter().map(|b| b.dead).collect(),
                flagged,
            },
            languages,
            stance,
            drift,
            reload_failures,
        }
    }
}

impl State {
    fn head_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.heads.iter().position(|h| h == name) {
            return i;
        }
        self.heads.push(name.to_string());
        for b in &mut self.buckets {
            b.flagged.push(0);
            b.scored.push(0);
        }
        self.heads.len() - 1
    }

    /// The index of the bucket for time `t`, opening it (and dropping old ones) if needed.
    fn bucket(&mut self, t: f64, keep: usize, width: usize) -> usize {
        let start = (t as i64).div_euclid(BUCKET_SECS) * BUCKET_SECS;
        if let Some(i) = self.buckets.iter().rposition(|b| b.start == start) {
            return i;
        }
        self.buckets.push_back(Bucket {
            start,
            flagged: vec![0; width],
            scored: vec![0; width],
            ..Bucket::default()
        });
        while self.buckets.len() > keep {
            self.buckets.pop_front();
        }
        self.buckets.len() - 1
    }

    fn tally(&mut self, bucket: usize, item: &Item<'_>) {
        if let Some(reason) = item.dead {
            self.dead += 1;
            *self.dead_by_reason.entry(reason.to_string()).or_default() += 1;
            return;
        }
        self.labelled += 1;
        let flagged = item.scores.iter().any(|s| s.2);
        self.flagged_comments += u64::from(flagged);
        let Some(b) = self.buckets.get_mut(bucket) else {
            return;
        };
        // Look up before inserting: the keys are few, the items many.
        if !b.languages.contains_key(item.lang) {
            b.languages.insert(item.lang.to_string(), (0, 0));
        }
        if let Some(lang) = b.languages.get_mut(item.lang) {
            lang.0 += 1;
            lang.1 += u64::from(flagged);
        }
        if let Some((target, label, _)) = item.stance {
            if !b.stance.contains_key(target) {
                b.stance.insert(target.to_string(), BTreeMap::new());
            }
            if let Some(labels) = b.stance.get_mut(target) {
                match labels.get_mut(label) {
                    Some(n) => *n += 1,
                    None => {
                        labels.insert(label.to_string(), 1);
                    }
                }
            }
        }
    }
}

/// Which of `n` heads score at least one item.
pub fn used_heads(n: usize, items: &[Item<'_>]) -> Vec<bool> {
    let mut used = vec![false; n];
    for item in items {
        for &(h, _, _) in item.scores {
            if let Some(u) = used.get_mut(h) {
                *u = true;
            }
        }
    }
    used
}

/// The feed's JSON for one event (a struct of strings, numbers and string-keyed maps, which
/// always serializes).
fn feed_json(record: &FeedRecord) -> Arc<str> {
    match serde_json::to_string(record) {
        Ok(json) => json.into(),
        Err(e) => {
            tracing::error!(error = %e, "a live feed event could not be serialized");
            Arc::from("{}")
        }
    }
}

fn feed_record(t: f64, heads: &[String], version: &str, item: &Item<'_>) -> FeedRecord {
    let mut labels = Vec::new();
    let mut scores = BTreeMap::new();
    for &(h, score, flag) in item.scores {
        if let Some(name) = heads.get(h) {
            if flag {
                labels.push(name.clone());
            }
            scores.insert(name.clone(), (score * 1000.0).round() / 1000.0);
        }
    }
    FeedRecord {
        id: item.id.to_string(),
        text: item.text.map(str::to_string),
        lang: item.lang.to_string(),
        labels,
        scores,
        stance: item.stance.map(|(target, label, p)| FeedStance {
            target: target.to_string(),
            label: label.to_string(),
            p,
        }),
        dead: item.dead.map(str::to_string),
        partition: item.partition,
        offset: item.offset,
        ts: t,
        model_version: version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item<'a>(id: &'a str, scores: &'a [(usize, f32, bool)]) -> Item<'a> {
        Item {
            id,
            text: Some("some text"),
            lang: "latin",
            scores,
            stance: Some(("Atheism", "AGAINST", 0.8)),
            dead: None,
            partition: 0,
            offset: 1,
        }
    }

    #[test]
    fn rates_windows_and_series_follow_the_stream() {
        let live = Live::new("serve", "test".into(), DriftConfig::default());
        let heads = vec!["offensive".to_string(), "hate".to_string()];
        let flagged = [(0, 0.9, true), (1, 0.2, false)];
        let clean = [(0, 0.1, false), (1, 0.1, false)];
        let t0 = 1_000_000.0;
        let batch: Vec<Item<'_>> = (0..10)
            .map(|i| item("x", if i < 3 { &flagged } else { &clean }))
            .collect();
        live.record(t0, &heads, "v1", &batch);
        let dead = Item {
            dead: Some("not_json"),
            ..item("d", &[])
        };
        live.record(t0 + 10.0, &heads, "v1", &[dead]);
        let s = live.state(t0 + 20.0, None, 0);
        assert_eq!(s.totals.labelled, 10);
        assert_eq!(s.totals.dead_letters, 1);
        assert_eq!(s.totals.flagged, 3);
        assert!((s.windows["1m"].rates["offensive"] - 0.3).abs() < 1e-9);
        assert!((s.windows["5m"].any - 0.3).abs() < 1e-9);
        assert_eq!(s.series.flagged["offensive"][0], 3);
        assert_eq!(s.stance["Atheism"]["AGAINST"], 10);
        assert_eq!(s.dead_letters_by_reason["not_json"], 1);
        assert_eq!(
            live.recent().len(),
            11,
            "every item fits the event budget here"
        );
    }

    #[test]
    fn a_page_that_connects_late_gets_the_backlog_then_only_newer_events() {
        let live = Live::new("serve", "test".into(), DriftConfig::default());
        let heads = vec!["offensive".to_string()];
        let flagged = [(0, 0.9, true)];
        let t0 = 3_000_000.0;
        live.record(
            t0,
            &heads,
            "v1",
            &[item("a", &flagged), item("b", &flagged)],
        );
        let (backlog, mut later) = live.feed();
        live.record(t0 + 1.0, &heads, "v1", &[item("c", &flagged)]);
        let seqs: Vec<u64> = backlog.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert!(
            backlog[1].json.contains(r#""id":"b""#),
            "{}",
            backlog[1].json
        );
        let next = later.try_recv().expect("the later event");
        assert_eq!(next.seq, 3);
        assert!(next.json.contains(r#""id":"c""#), "{}", next.json);
        assert!(later.try_recv().is_err(), "nothing twice");
    }

    #[test]
    fn drift_is_flagged_on_a_synthetic_label_stream() {
        let live = Live::new("monitor", "test".into(), DriftConfig::default());
        let heads = vec!["offensive".to_string()];
        let on = [(0, 0.9, true)];
        let off = [(0, 0.1, false)];
        let t0 = 2_000_000.0;
        // 30 minutes at a 10% flag rate, 50 comments per 10-second bucket…
        for b in 0..180 {
            let t = t0 + f64::from(b) * 10.0;
            let batch: Vec<Item<'_>> = (0..50)
                .map(|i| item("x", if i < 5 { &on } else { &off }))
                .collect();
            live.record(t, &heads, "v1", &batch);
        }
        let calm = live.drift_at(t0 + 1795.0);
        assert!(calm.iter().all(|d| !d.alert), "{calm:?}");
        // …then a minute at 50%.
        for b in 180..186 {
            let t = t0 + f64::from(b) * 10.0;
            let batch: Vec<Item<'_>> = (0..50)
                .map(|i| item("x", if i < 25 { &on } else { &off }))
                .collect();
            live.record(t, &heads, "v1", &batch);
        }
        let drift = live.drift_at(t0 + 1855.0);
        assert!(drift[0].alert && drift[0].z > 4.0, "{drift:?}");
        assert!((drift[0].baseline - 0.1).abs() < 0.01);
    }
}
