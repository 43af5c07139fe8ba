//! `moderato classify`: JSON lines in, labelled JSON lines out, in order, on all cores.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use moderato::classify::{Comment, ModelRef};
use moderato::model::Scratch;
use moderato::policy::{InputPolicy, DEFAULT_MAX_TEXT_CHARS};
use moderato::record::classify;
use rayon::prelude::*;

/// Lines classified per parallel batch.
const BATCH: usize = 4096;

/// Arguments of `moderato classify`.
#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Model file (default: the shipped default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Input JSONL file, or - for stdin.
    #[arg(long, default_value = "-")]
    input: String,
    /// Output JSONL file, or - for stdout.
    #[arg(long, default_value = "-")]
    output: String,
    /// Add the N n-grams that contributed most to every flagged head.
    #[arg(long, default_value_t = 0)]
    explain: usize,
    /// Domain for comments that carry none (a site's calibration, e.g. `mpold`); a comment's
    /// own `domain` field wins.
    #[arg(long)]
    domain: Option<String>,
    /// Score at most this many characters of a text, counted after normalization (invisible
    /// characters do not count); a longer text is marked `"truncated": true`.
    #[arg(long, default_value_t = DEFAULT_MAX_TEXT_CHARS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_text_chars: usize,
}

/// Runs `moderato classify`.
pub fn run(a: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let model = super::load_model(a.model.as_deref())?;
    let model_ref = ModelRef::of(&model);
    let policy = InputPolicy {
        default_domain: a.domain.clone(),
        max_text_chars: a.max_text_chars,
    };
    let input: Box<dyn BufRead> = if a.input == "-" {
        Box::new(BufReader::new(io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            File::open(&a.input).with_context(|| format!("cannot open --input {}", a.input))?,
        ))
    };
    let output: Box<dyn Write> = if a.output == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            File::create(&a.output)
                .with_context(|| format!("cannot create --output {}", a.output))?,
        )
    };
    let mut output = BufWriter::with_capacity(1 << 20, output);
    let mut lines = input.split(b'\n');
    let (mut line_no, mut bad, mut done) = (0usize, 0usize, false);
    while !done {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match lines.next() {
                Some(line) => {
                    line_no += 1;
                    let mut line = line.context("reading input")?;
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    batch.push((line_no, line));
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        let rendered: Vec<(bool, Vec<u8>)> = batch
            .par_iter()
            .map_init(
                Scratch::default,
                |scratch, (n, line)| match Comment::parse(line) {
                    Ok(mut comment) => {
                        let record = classify(
                            &model,
                            &model_ref,
                            &policy,
                            &mut comment,
                            scratch,
                            a.explain,
                        );
                        (true, serde_json::to_vec(&record).unwrap_or_default())
                    }
                    Err(e) => {
                        let err = serde_json::json!({"line": n, "error": e.to_string()});
                        (false, err.to_string().into_bytes())
                    }
                },
            )
            .collect();
        for (ok, bytes) in rendered {
            bad += usize::from(!ok);
            output.write_all(&bytes)?;
            output.write_all(b"\n")?;
        }
    }
    output.flush()?;
    if bad > 0 {
        eprintln!("{bad} bad input line(s) reported in place");
    }
    Ok(ExitCode::SUCCESS)
}
