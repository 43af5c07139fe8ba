//! moderato: a streaming stance and toxicity classifier for reader comments.
//!
//! A comment flows one way through the stages, one module each:
//! [`normalize`] (Unicode and Arabic normalization) → [`features`] (hashed character and word
//! n-grams) → [`model`] (sparse linear heads: binary toxicity flags, target-conditioned stance)
//! → [`classify`] (a comment's labels) → [`record`] (the JSON record every producer writes, under
//! the one input [`policy`]). [`train`] builds models from labelled CSV files and [`eval`]
//! measures them. With the `service` feature (on by default), `stream` runs it as a Kafka
//! service, `ops` lets operators watch it (metrics, dashboard, health), `perspective` answers
//! the Perspective API's routes, `http_api` joins those routes into one HTTP API, `service`
//! wires it all into `moderato serve`, and `monitor` watches a label topic. [`fuzz`] holds the harnesses of the fuzz targets in `fuzz/`.
//!
//! ```
//! use moderato::classify::{label, Comment, ModelRef};
//! use moderato::model::{file, Scratch};
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.model");
//! let model = file::load(std::path::Path::new(path)).expect("the shipped model loads");
//! let comment = Comment::parse(br#"{"id": 1, "text": "You are a pathetic idiot"}"#).expect("valid");
//! let out = label(&model, &ModelRef::of(&model), &comment, &mut Scratch::default(), 0);
//! assert!(out.labels.contains(&"offensive".to_string()));
//! ```

pub mod classify;
pub mod clock;
pub mod csv_file;
pub mod error;
pub mod eval;
pub mod features;
pub mod fuzz;
#[cfg(feature = "service")]
pub mod http_api;
pub mod http_limits;
pub mod lang;
pub mod model;
#[cfg(feature = "service")]
pub mod monitor;
pub mod normalize;
#[cfg(feature = "service")]
pub mod ops;
#[cfg(feature = "service")]
pub mod perspective;
pub mod plot;
pub mod policy;
pub mod record;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod stream;
pub mod train;

pub use model::Model;
