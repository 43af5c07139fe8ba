//! Build script: with the `embedded-model` feature, tells the crate (its `model::source`) whether
//! `models/default.model` is there to be built in (`cfg(moderato_embedded)`). A package made by
//! `cargo package` leaves the model out (it holds no data), and its binary then says where it
//! looked for a model file.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(moderato_embedded)");
    println!("cargo::rerun-if-changed=models/default.model");
    if std::env::var_os("CARGO_FEATURE_EMBEDDED_MODEL").is_none() {
        return;
    }
    if Path::new("models/default.model").exists() {
        println!("cargo::rustc-cfg=moderato_embedded");
    } else {
        println!(
            "cargo::warning=models/default.model is missing: this binary has no built-in model \
             and needs --model, MODERATO_MODEL or a model in its data directory"
        );
    }
}
