//! Fuzz target `model_file`: the harness [`moderato::fuzz::model_file::check`] on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moderato::fuzz::model_file::check(data));
