//! Command-line parsing and dispatch; each subcommand lives in its own file.

mod api;
mod calibrate;
mod classify;
mod demo;
mod eval;
mod monitor;
mod serve;
mod train;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

pub use moderato::model::source::ModelSource;

/// Exit status of a runtime error (a usage error exits 2, from clap).
pub const EXIT_RUNTIME: u8 = 1;

/// The exit-status table, as `--help` prints it.
const EXIT_STATUS: &str = "Exit status:
  0  success (also when the reader of stdout closed it early, as `moderato classify | head` does)
  1  runtime error: an unusable model, config or input file, a Kafka failure, a shutdown that
     did not drain in time
  2  usage error: an unknown subcommand or flag, a missing or bad argument value";

/// Streaming stance and toxicity classifier for reader comments.
#[derive(Parser, Debug)]
#[command(name = "moderato", version, about, after_help = EXIT_STATUS)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "MODERATO_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model: one head from a CSV (--data ... --label ...) or the heads of a config.
    Train(train::TrainArgs),
    /// Label JSON lines: one comment object in, one labelled object out, same order.
    Classify(classify::ClassifyArgs),
    /// A site's own calibration from its moderators' decisions, in seconds (no retraining).
    Calibrate(calibrate::CalibrateArgs),
    /// Evaluate a model head on a labelled CSV.
    Eval(eval::EvalArgs),
    /// Run the Kafka service: comments in, labels out, bad messages to a dead-letter topic.
    Serve(Box<serve::ServeArgs>),
    /// Watch a label topic: dashboard, metrics and drift alerts over every instance's output.
    Monitor(monitor::MonitorArgs),
    /// The HTTP API alone (Perspective-compatible routes and /v1/classify), for sites without Kafka.
    Api(api::ApiArgs),
    /// Zero-setup demo: an in-process broker, the real service, sample comments, live output.
    Demo(demo::DemoArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Serve(a) => serve::run(*a),
        Command::Demo(a) => demo::run(a),
        Command::Api(a) => api::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Monitor(a) => monitor::run(a),
    }
}

/// Whether `e` is a write to a pipe whose reader has gone (EPIPE).
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Replaces the default panic message, which quotes the panic's payload (a payload can carry a
/// slice of a comment), with one that names only where the panic happened.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("{}", moderato::stream::record::panic_report(info));
    }));
}

/// Installs the `tracing` subscriber (level from `RUST_LOG`, default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads `--model`, or the default model from where [`ModelSource::find`] finds it.
pub fn load_model(path: Option<&Path>) -> anyhow::Result<moderato::Model> {
    Ok(ModelSource::find(path)?.load()?)
}

/// The async runtime of `serve` and `demo`: enough workers that a rebalance callback, which
/// blocks one of them while in-flight batches drain, never starves the others.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
