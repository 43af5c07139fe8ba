//! `moderato demo`: the whole service on one machine with nothing installed. An in-process
//! Kafka broker, the real serve pipeline, the bundled sample comments (or lines typed on stdin)
//! produced to it, and the labelled stream printed as it arrives.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use moderato::classify::{id_text, HeadResult};
use moderato::record::Record;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::ServeConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// The sample comments: the two Algeria Times comments and a few English and Arabic ones.
const SAMPLES: &str = include_str!("../../examples/comments.jsonl");
/// A malformed message, to show the dead-letter path.
const MALFORMED: &str = r#"{"id": "bad-1", "txt": "a comment with its field misnamed"}"#;

/// Arguments of `moderato demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Model file (default: the shipped default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Do not read comments from stdin after the samples.
    #[arg(long)]
    no_stdin: bool,
    /// Keep serving after the input ends, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// Pause between sample comments, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pace_ms: u64,
    /// Address of the dashboard and metrics; `off` for none.
    #[arg(long, default_value = "127.0.0.1:9464")]
    http: String,
}

/// What the demo keeps of a comment it sent: its text, and what a human reader makes of it
/// (the sample's `reader` field), so the view can print where the model disagrees.
#[derive(Clone, Default)]
struct Sent {
    text: String,
    reader: Value,
}

/// Sent comments by id, so the view can print a label next to the comment it labels.
type Texts = Arc<Mutex<HashMap<String, Sent>>>;

/// Runs `moderato demo`.
pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let cfg = ServeConfig::with_brokers("embedded")?;
    let broker = EmbeddedBroker::for_service(&cfg)?;
    let cfg = ServeConfig {
        brokers: broker.bootstrap_servers(),
        model: a.model.clone(),
        ..cfg
    };
    let source = super::ModelSource::find(cfg.model.as_deref())?;
    let cfg = ServeConfig {
        http: match a.http.as_str() {
            "off" => None,
            addr => Some(
                addr.parse()
                    .with_context(|| format!("--http `{addr}` is not HOST:PORT or `off`"))?,
            ),
        },
        ..cfg
    };
    println!("moderato demo: in-process Kafka broker at {}", cfg.brokers);
    println!(
        "  {} → moderato serve → {} (labels) / {} (dead letters)\n",
        cfg.input_topic, cfg.output_topic, cfg.dlq_topic
    );
    if let Some(addr) = cfg.http {
        println!("  dashboard: http://{addr}/   metrics: http://{addr}/metrics\n");
    }
    let code = super::runtime()?.block_on(demo(cfg, source, a))?;
    drop(broker);
    Ok(code)
}

async fn demo(
    cfg: ServeConfig,
    model: super::ModelSource,
    a: DemoArgs,
) -> anyhow::Result<ExitCode> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(moderato::service::run(cfg.clone(), model, async move {
        let _ = stop_rx.await;
    }));
    let texts: Texts = Arc::default();
    let shown = Arc::new(AtomicUsize::new(0));
    let view = tokio::spawn(view(cfg.clone(), Arc::clone(&texts), Arc::clone(&shown)));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .context("demo producer")?;

    let mut sent = 0usize;
    for line in SAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .chain([MALFORMED])
    {
        send(&producer, &cfg, &texts, line, sent).await?;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(a.pace_ms)).await;
    }
    if !a.no_stdin {
        let stdin = tokio::io::stdin();
        if std::io::stdin().is_terminal() {
            println!("Type a comment and press Enter (Ctrl-D to finish):");
        }
        let mut lines = tokio::io::BufReader::new(stdin).lines();
        while let Some(line) = lines.next_line().await.context("reading stdin")? {
            if line.trim().is_empty() {
                continue;
            }
            let payload = if line.trim_start().starts_with('{') {
                line
            } else {
                serde_json::json!({"id": format!("stdin-{}", sent + 1), "text": line}).to_string()
            };
            send(&producer, &cfg, &texts, &payload, sent).await?;
            sent += 1;
        }
    }
    let all_shown = async {
        while shown.load(Ordering::SeqCst) < sent {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut service = service;
    tokio::select! {
        done = tokio::time::timeout(Duration::from_secs(30), all_shown) => {
            if done.is_err() {
                eprintln!(
                    "only {} of {sent} comments came back within 30 s",
                    shown.load(Ordering::SeqCst)
                );
            }
        }
        // The service stopped on its own (e.g. its HTTP port is taken): say why at once.
        ended = &mut service => {
            view.abort();
            ended.context("service task")??;
            anyhow::bail!("the service stopped before the comments came back");
        }
    }
    if a.keep_running {
        println!("\nStill serving at {} (Ctrl-C to stop).", cfg.brokers);
        super::stop_signal().await;
    }
    let _ = stop_tx.send(());
    let summary = service.await.context("service task")??;
    view.abort();
    println!(
        "\n{} comments in: {} labelled, {} dead-lettered.",
        summary.consumed, summary.produced, summary.dead_lettered
    );
    Ok(if shown.load(Ordering::SeqCst) >= sent && summary.drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn send(
    producer: &FutureProducer,
    cfg: &ServeConfig,
    texts: &Texts,
    payload: &str,
    n: usize,
) -> anyhow::Result<()> {
    let value: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let id = match &value["id"] {
        Value::Null => format!("#{n}"),
        other => id_text(other),
    };
    let sent = Sent {
        text: value["text"].as_str().unwrap_or(payload).to_string(),
        reader: value["reader"].clone(),
    };
    texts
        .lock()
        .map_err(|_| anyhow::anyhow!("texts lock poisoned"))?
        .insert(id.clone(), sent);
    producer
        .send(
            FutureRecord::to(&cfg.input_topic).key(&id).payload(payload),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing to {}: {e}", cfg.input_topic))?;
    Ok(())
}

/// Prints the output and dead-letter topics as records arrive.
async fn view(cfg: ServeConfig, texts: Texts, shown: Arc<AtomicUsize>) -> anyhow::Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", "moderato-demo-view")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("demo view consumer")?;
    consumer.subscribe(&[&cfg.output_topic, &cfg.dlq_topic])?;
    let color = std::io::stdout().is_terminal();
    loop {
        let m = consumer.recv().await?;
        let key = m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let sent = texts
            .lock()
            .ok()
            .and_then(|t| t.get(&key).cloned())
            .unwrap_or_default();
        let text = &sent.text;
        let out = if m.topic() == cfg.dlq_topic {
            let reason = m
                .headers()
                .and_then(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .find(|h| h.key == "moderato-error-message")
                        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                })
                .unwrap_or_default();
            format!(
                "{}  {}\n    {}\n",
                paint(color, "2", &format!("{:<32}", key)),
                paint(color, "33", &format!("dead letter: {reason}")),
                clip(text, 100)
            )
        } else {
            let record: Record = serde_json::from_slice(m.payload().unwrap_or_default())
                .context("a label record the demo cannot read")?;
            render(&record, &key, &sent, color)
        };
        println!("{out}");
        shown.fetch_add(1, Ordering::SeqCst);
    }
}

/// One labelled record, for a terminal, with a note where a human reader (the sample's
/// `reader` field) disagrees: the demo shows the model's mistakes, it does not hide them.
fn render(record: &Record, id: &str, sent: &Sent, color: bool) -> String {
    let lang = record.lang.as_deref().unwrap_or(record.script().code());
    let mut flags = Vec::new();
    let mut flagged = Vec::new();
    let mut stance = String::new();
    for (name, head) in &record.heads {
        match head {
            HeadResult::Binary { flag: true, score } => {
                flags.push(format!("{name} {score:.2}"));
                flagged.push(name.as_str());
            }
            HeadResult::Multiclass {
                label,
                scores,
                target: Some(target),
            } => {
                let p = scores.get(label).copied().unwrap_or(0.0);
                stance = format!("\n    {name} toward {target}: {label} {p:.2}");
                if let Some(human) = sent.reader[name.as_str()].as_str() {
                    if human != label {
                        stance += &paint(color, "33", &format!("  ✗ a reader says {human}"));
                    }
                }
            }
            _ => {}
        }
    }
    let disagree = sent.reader["flags"].as_array().and_then(|want| {
        // Only the heads that scored this comment can agree or disagree.
        let want: Vec<&str> = want
            .iter()
            .filter_map(Value::as_str)
            .filter(|h| record.heads.contains_key(*h))
            .collect();
        let same = want.len() == flagged.len() && want.iter().all(|w| flagged.contains(w));
        (!same).then(|| {
            let said = if want.is_empty() {
                "ok".to_string()
            } else {
                want.join(", ")
            };
            paint(color, "33", &format!("  ✗ a reader says {said}"))
        })
    });
    let mut verdict = if flags.is_empty() {
        paint(color, "32", "ok")
    } else {
        paint(color, "1;31", &flags.join(" · "))
    };
    verdict += &disagree.unwrap_or_default();
    // What the model declined to score, and why: a head (or a stance target) never trained on
    // this script.
    let unscored: Vec<String> = record
        .skipped
        .iter()
        .filter(|(_, why)| why.contains("not trained"))
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    let unscored = if unscored.is_empty() {
        String::new()
    } else {
        paint(
            color,
            "2",
            &format!("\n    not scored: {}", unscored.join("; ")),
        )
    };
    format!(
        "{}  {lang}  {verdict}{stance}{unscored}\n    {}\n",
        paint(color, "2", &format!("{id:<32}")),
        clip(&sent.text, 100)
    )
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn clip(text: &str, chars: usize) -> String {
    let prefix = moderato::lang::char_prefix(text, chars);
    if prefix.len() < text.len() {
        format!("{prefix}…")
    } else {
        text.to_string()
    }
}
