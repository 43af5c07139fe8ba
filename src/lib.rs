//! moderato: a streaming stance and toxicity classifier for reader comments.
//!
//! A comment flows one way through the stages, one module each:
//! [`normalize`] (Unicode and Arabic normalization) → [`features`] (hashed character and word
//! n-grams) → [`model`] (sparse linear heads: binary toxicity flags, target-conditioned stance)
//! → [`classify`] (the JSON record a comment becomes). [`train`] builds models from labelled CSV
//! files and [`eval`] measures them.

pub mod classify;
pub mod error;
pub mod eval;
pub mod features;
pub mod lang;
pub mod model;
pub mod normalize;
pub mod plot;
pub mod train;

pub use model::Model;
