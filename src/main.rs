//! The `moderato` command line: train, classify, eval (see `cli`).
//!
//! Exit status (also in `moderato --help` and the README): 0 success, including output cut
//! short by a reader that closed the pipe (`moderato classify | head`); 1 a runtime error (an
//! unusable model, config or input file, a Kafka failure, a shutdown that did not drain);
//! 2 a usage error (clap: an unknown flag or a bad value).

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, not glibc's malloc: the stream's records are built on one tokio worker and freed on
/// another, and glibc's per-thread arenas spent about 8 % of the service's CPU on that
/// (`scripts/profile-stream`: `_int_malloc`, `_int_free`, `malloc_consolidate`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    cli::install_panic_hook();
    match cli::run(args) {
        Ok(code) => code,
        // The reader went away (`| head`): what it asked for was written, as ripgrep treats it.
        Err(e) if cli::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_RUNTIME)
        }
    }
}
