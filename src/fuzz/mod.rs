//! Fuzz harnesses: what each fuzz target under `fuzz/` does with one input, kept in the library
//! so that `tests/fuzz_corpus.rs` replays the committed corpus (`fuzz/corpus/<target>/`)
//! through the same code with a plain `cargo test`, no nightly and no sanitizer.
//!
//! A harness takes arbitrary bytes, drives one stage with them and checks that stage's
//! invariants. It panics exactly when an invariant breaks (that is how libFuzzer and the test
//! see a failure); on any input that the code handles correctly it returns.
//!
//! | target       | harness               | stage                                              |
//! |--------------|-----------------------|----------------------------------------------------|
//! | `model_file` | [`model_file::check`] | [`crate::model::file::from_bytes`], SHA-256 fixed  |
//! | `message`    | `message::check`      | `stream::inbound::from_parts` → `process`          |
//! | `text`       | [`text::check`]       | [`crate::normalize`] and [`crate::features`]       |

#[cfg(feature = "service")]
pub mod message;
pub mod model_file;
pub mod text;
pub mod tiny;

mod input;

/// The fuzz targets, by the name of their directory under `fuzz/corpus/` (`message` needs the
/// `service` feature).
#[cfg(feature = "service")]
pub const TARGETS: &[&str] = &["model_file", "message", "text"];
/// The fuzz targets, by the name of their directory under `fuzz/corpus/`.
#[cfg(not(feature = "service"))]
pub const TARGETS: &[&str] = &["model_file", "text"];

/// Runs the harness of `target` on one input; `false` when there is no such target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "model_file" => model_file::check(data),
        #[cfg(feature = "service")]
        "message" => message::check(data),
        "text" => text::check(data),
        _ => return false,
    }
    true
}
