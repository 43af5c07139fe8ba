//! `moderato classify`: JSON lines in, labelled JSON lines out, in order, on all cores.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use moderato::classify::{Comment, ModelRef};
use moderato::error::InputError;
use moderato::model::Scratch;
use moderato::policy::{InputPolicy, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_TEXT_CHARS};
use moderato::record::classify;
use rayon::prelude::*;

/// Lines classified per parallel batch.
const BATCH: usize = 4096;
/// Bytes of input held per batch, at most (plus one line): a batch of long lines stays small.
const BATCH_BYTES: usize = 16 << 20;

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
    /// Longest input line, in bytes (the stream's `--max-payload-bytes`, with the same
    /// default): a longer line is reported in place as `too_large`, and never held in memory.
    #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_payload_bytes: usize,
}

/// One input line: its bytes (without the line end), or only its size when it is over the
/// limit (such a line is skipped as it is read, not kept).
enum Line {
    Fits(Vec<u8>),
    TooLong(usize),
}

/// Reads the next line of `input`, keeping at most `max` bytes of it; `None` at the end.
fn next_line(input: &mut dyn BufRead, max: usize) -> io::Result<Option<Line>> {
    let (mut line, mut size, mut any) = (Vec::new(), 0usize, false);
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        any = true;
        let end = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..end.unwrap_or(buf.len())];
        size = size.saturating_add(chunk.len());
        // One byte past the limit: room for a `\r` before the `\n`.
        let room = max
            .saturating_add(1)
            .saturating_sub(line.len())
            .min(chunk.len());
        line.extend_from_slice(&chunk[..room]);
        let used = end.map_or(buf.len(), |i| i + 1);
        input.consume(used);
        if end.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if size == line.len() && line.last() == Some(&b'\r') {
        line.pop();
        size -= 1;
    }
    Ok(Some(if size > max {
        Line::TooLong(size)
    } else {
        Line::Fits(line)
    }))
}

/// Runs `moderato classify`.
pub fn run(a: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let model = super::load_model(a.model.as_deref())?;
    let model_ref = ModelRef::of(&model);
    let policy = InputPolicy {
        default_domain: a.domain.clone(),
        max_text_chars: a.max_text_chars,
    };
    let mut input: Box<dyn BufRead> = if a.input == "-" {
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
    let (mut line_no, mut bad, mut done) = (0usize, 0usize, false);
    while !done {
        let mut batch = Vec::with_capacity(BATCH);
        let mut held = 0usize;
        while batch.len() < BATCH && held < BATCH_BYTES {
            match next_line(&mut *input, a.max_payload_bytes).context("reading input")? {
                Some(line) => {
                    line_no += 1;
                    if let Line::Fits(bytes) = &line {
                        held += bytes.len();
                    }
                    batch.push((line_no, line));
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        let limit = a.max_payload_bytes;
        let rendered: Vec<(bool, Vec<u8>)> = batch
            .par_iter()
            .map_init(Scratch::default, |scratch, (n, line)| {
                let parsed = match line {
                    Line::Fits(bytes) => Comment::parse(bytes),
                    Line::TooLong(size) => Err(InputError::TooLarge { size: *size, limit }),
                };
                match parsed {
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
                }
            })
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
