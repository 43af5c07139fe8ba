//! Harness of the `model_file` target: the loader on arbitrary bytes, with the SHA-256 made
//! right so that the fuzzer gets past the checksum to the header parser and the table checks.
//!
//! Input: one mode byte, then
//! - mode even (*framed*): a `u16` LE header length `H`, then the header and the table bytes.
//!   The harness writes a correct prefix (magic, version, `H`, weight count) around them;
//! - mode odd (*raw*): the whole file but its digest, prefix fields included.
//!
//! Either way the harness appends the SHA-256 of what came before. Invariants: the loader never
//! panics; a model it accepts has the file's SHA-256, scores a few comments (with and without
//! each head's targets) into probabilities in 0..=1, and saves to bytes that load again and save
//! to the same bytes.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::input::Input;
use crate::model::file::{self, FORMAT_VERSION, MAGIC};
use crate::model::{HeadOutcome, Model, Scratch};

/// Texts every accepted model scores.
const TEXTS: [&str; 3] = ["you are an idiot", "مرحبا بكم", "😂😂 !!"];

/// The file the harness loads for `data`: framed or raw as the mode byte says, digest appended.
pub fn file_of(data: &[u8]) -> Vec<u8> {
    let mut input = Input::new(data);
    let mode = input.byte();
    let mut out = Vec::with_capacity(data.len() + 64);
    if mode % 2 == 0 {
        let header_len = u16::from_le_bytes([input.byte(), input.byte()]);
        let header = input.take(usize::from(header_len));
        let table = input.rest();
        let table = &table[..table.len() & !1];
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&(table.len() as u64 / 2).to_le_bytes());
        out.extend_from_slice(header);
        out.extend_from_slice(table);
    } else {
        out.extend_from_slice(input.rest());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// The framed input whose file is `bytes` (a model file as saved): the seed of a real model.
pub fn seed_of(bytes: &[u8]) -> Vec<u8> {
    let header_len = bytes
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes) as usize;
    let body_end = bytes.len().saturating_sub(32);
    let header_end = (32 + header_len).min(body_end);
    let mut out = vec![0];
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(bytes.get(32..header_end).unwrap_or_default());
    out.extend_from_slice(bytes.get(header_end..body_end).unwrap_or_default());
    out
}

/// Loads the file of one input and checks the invariants above; panics when one breaks.
pub fn check(data: &[u8]) {
    let bytes = file_of(data);
    let Ok(model) = file::from_bytes(&bytes, Path::new("fuzz.model")) else {
        return;
    };
    let sha = file::hex(&Sha256::digest(&bytes));
    assert_eq!(model.sha256, sha, "the model's sha256 is its file's");
    score_all(&model);
    let (saved, _) = file::to_bytes(&model);
    let again = match file::from_bytes(&saved, Path::new("fuzz-saved.model")) {
        Ok(again) => again,
        Err(e) => panic!("an accepted model saves to bytes that do not load: {e}"),
    };
    assert!(
        file::to_bytes(&again).0 == saved,
        "a saved and reloaded model saves to other bytes"
    );
}

/// Scores every text with no target and with each target of each head.
fn score_all(model: &Model) {
    let mut scratch = Scratch::default();
    let mut targets: Vec<Option<&str>> = vec![None, Some("")];
    for head in model.heads() {
        targets.extend(head.targets.iter().map(|t| Some(t.as_str())));
    }
    for text in TEXTS {
        for &target in &targets {
            for outcome in model.score(text, target, &mut scratch) {
                match outcome {
                    HeadOutcome::Binary { score, .. } => {
                        assert!((0.0..=1.0).contains(&score), "binary score {score}")
                    }
                    HeadOutcome::Multiclass { label, probs, .. } => {
                        assert!(label < probs.len(), "label {label} of {}", probs.len());
                        assert!(
                            probs.iter().all(|p| (0.0..=1.0).contains(p)),
                            "probabilities {probs:?}"
                        );
                    }
                    HeadOutcome::Skipped { .. } => {}
                }
            }
        }
    }
}
