//! Where a model is found when no file is named: `MODERATO_MODEL`, then the platform data
//! directory, then beside the binary, then the default model built into the crate (the
//! `embedded-model` feature, on by default), so that `cargo install` gives a binary that labels
//! comments after its checkout is gone, and a library user gets the default model with
//! `ModelSource::find(None)?.load()`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{file, Model};
use crate::error::ModelError;

/// The shipped default model, built in (`embedded-model` feature, when the checkout has the
/// file: see `build.rs`).
#[cfg(moderato_embedded)]
const EMBEDDED: Option<&[u8]> = Some(include_bytes!("../../models/default.model"));
/// No model is built in without the `embedded-model` feature.
#[cfg(not(moderato_embedded))]
const EMBEDDED: Option<&[u8]> = None;

/// The file name of the default model in each place it is looked for.
const FILE: &str = "default.model";

/// A model to load: a file (which a running `serve` hot-reloads), or the built-in copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A model file.
    File(PathBuf),
    /// The default model built into this binary.
    Embedded,
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::File(p) => write!(f, "{}", p.display()),
            ModelSource::Embedded => f.write_str("the default model built into this binary"),
        }
    }
}

impl ModelSource {
    /// `--model` if given, else the first of [`candidates`] that exists, else the built-in
    /// model; an error that lists where it looked when there is none.
    pub fn find(flag: Option<&Path>) -> Result<Self, ModelError> {
        if let Some(p) = flag {
            return Ok(ModelSource::File(p.to_path_buf()));
        }
        // A model named by the environment must be there: falling back to another one would
        // serve a model the operator did not choose.
        if let Some(p) = std::env::var_os("MODERATO_MODEL").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if !p.exists() {
                return Err(ModelError::EnvMissing(p));
            }
            return Ok(ModelSource::File(p));
        }
        let looked = candidates(
            data_dir().as_deref(),
            std::env::current_exe().ok().as_deref(),
        );
        if let Some(p) = looked.iter().find(|p| p.exists()) {
            return Ok(ModelSource::File(p.clone()));
        }
        if EMBEDDED.is_some() {
            return Ok(ModelSource::Embedded);
        }
        let places: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
        Err(ModelError::NotFound {
            looked: places.join(", "),
        })
    }

    /// The file a hot reload reads; `None` for the built-in model.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ModelSource::File(p) => Some(p),
            ModelSource::Embedded => None,
        }
    }

    /// Loads and checks the model; the error says which source was refused and why.
    pub fn load(&self) -> Result<Model, ModelError> {
        let model = match (self, EMBEDDED) {
            (ModelSource::File(p), _) => file::load(p)?,
            (ModelSource::Embedded, Some(bytes)) => {
                file::from_bytes(bytes, Path::new("<the model built into this binary>"))?
            }
            (ModelSource::Embedded, None) => return Err(ModelError::NotBuiltIn),
        };
        tracing::info!(source = %self, name = %model.info.name, version = %model.info.version, "model loaded");
        Ok(model)
    }
}

/// The platform's per-user data directory: `$XDG_DATA_HOME` or `~/.local/share` (Linux and
/// other Unixes), `~/Library/Application Support` (macOS), `%APPDATA%` (Windows).
fn data_dir() -> Option<PathBuf> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(target_os = "macos") {
        return home().map(|h| h.join("Library/Application Support"));
    }
    if cfg!(windows) {
        return std::env::var_os("APPDATA").map(PathBuf::from);
    }
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".local/share")))
}

/// The files looked for, in order: `DATA/moderato/default.model`, then beside the binary
/// (`BIN/default.model`, an install prefix's `BIN/../share/moderato/default.model`, and a
/// checkout's `models/default.model` above `target/<profile>/moderato`).
fn candidates(data: Option<&Path>, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(d) = data {
        v.push(d.join("moderato").join(FILE));
    }
    if let Some(bin) = exe.and_then(Path::parent) {
        v.push(bin.join(FILE));
        if let Some(prefix) = bin.parent() {
            v.push(prefix.join("share/moderato").join(FILE));
            if prefix.file_name().is_some_and(|n| n == "target") {
                if let Some(root) = prefix.parent() {
                    v.push(root.join("models").join(FILE));
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_comes_before_the_places_beside_the_binary() {
        let got = candidates(
            Some(Path::new("/home/u/.local/share")),
            Some(Path::new("/opt/m/target/release/moderato")),
        );
        let want = [
            "/home/u/.local/share/moderato/default.model",
            "/opt/m/target/release/default.model",
            "/opt/m/target/share/moderato/default.model",
            "/opt/m/models/default.model",
        ];
        assert_eq!(got, want.map(PathBuf::from));
        // Only a checkout's `target/` looks for `models/` above it.
        let installed = candidates(None, Some(Path::new("/usr/local/bin/moderato")));
        assert_eq!(
            installed,
            [
                "/usr/local/bin/default.model",
                "/usr/local/share/moderato/default.model"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(candidates(None, None), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_flag_wins_and_the_sources_say_where_they_are() {
        let flag = ModelSource::find(Some(Path::new("/x/m.model"))).expect("a flag is taken");
        assert_eq!(flag, ModelSource::File("/x/m.model".into()));
        assert_eq!(flag.file(), Some(Path::new("/x/m.model")));
        assert_eq!(flag.to_string(), "/x/m.model");
        assert_eq!(ModelSource::Embedded.file(), None);
    }

    #[cfg(moderato_embedded)]
    #[test]
    fn the_built_in_model_loads() {
        let model = ModelSource::Embedded.load().expect("the built-in model");
        assert!(!model.heads().is_empty());
    }
}
