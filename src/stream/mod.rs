//! `moderato serve`: the Kafka service. Comments are read from an input topic, classified in
//! micro-batches on all cores and written to an output topic; undecodable messages go to a
//! dead-letter topic. Delivery is at-least-once: an input offset is stored only after its output
//! or dead letter is acknowledged. Scaling out is Kafka's job: more instances, one group.
//!
//! - [`config`]: settings from flags, `MODERATO_*` variables and a TOML file, checked at start.
//! - [`record`]: one message in, one output record or dead letter out (pure).
//! - [`pipeline`]: the consume → classify → produce → store-offset loop and its shutdown,
//!   with [`consume`] (batches, rebalance drain) and [`deliver`] (produce, acknowledge, store).
//! - [`properties`]: librdkafka properties from `MODERATO_LIBRDKAFKA__*` and `@FILE` values.
//! - [`preflight`]: the start-up check that the brokers accept us and the topics exist.
//! - [`reload`]: hot model reload on SIGHUP or a changed file.
//! - [`embedded`]: librdkafka's in-process mock broker for the demo.
//! - [`feedback`]: moderator decisions joined with their comments' text, for retraining.

pub mod config;
pub mod consume;
pub mod deliver;
pub mod embedded;
pub mod feedback;
pub mod pipeline;
pub mod preflight;
pub mod properties;
pub mod record;
pub mod reload;

pub use config::{ServeConfig, ServeSettings};
pub use pipeline::{run, NoObserver, Observe, RunSummary};
pub use reload::ModelSlot;
