//! Fuzz target `message`: the harness [`moderato::fuzz::message::check`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moderato::fuzz::message::check(data));
