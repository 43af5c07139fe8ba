//! Fuzz target `text`: the harness [`moderato::fuzz::text::check`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moderato::fuzz::text::check(data));
