//! `moderato serve`: the Kafka service. Comments are read from an input topic, classified in
//! micro-batches on all cores and written to an output topic; undecodable messages go to a
//! dead-letter topic. Delivery is at-least-once by default (an input offset is stored only after
//! its output or dead letter is acknowledged), or exactly-once (`--guarantee exactly-once`: each
//! batch is one transaction). Scaling out is Kafka's job: more instances, one group.
//!
//! - [`config`]: settings from flags, `MODERATO_*` variables and a TOML file, checked at start.
//! - [`message`]: a message as read and a record ready to produce (plain data).
//! - [`record`]: one message in, one output record or dead letter out (pure), kept under the
//!   size limit by [`fit`].
//! - [`pipeline`]: the consume → classify → deliver loop and its shutdown, with [`consume`]
//!   (batches, pause under backpressure, rebalance drain; [`inbound`] copies a message),
//!   [`work`] (classify), [`deliver`] (produce, acknowledge, store) and [`deliver::transact`]
//!   (exactly-once); [`observe`] is what they report, [`event`] each failure or turn they
//!   meet (logged and counted at once), [`guarantee`] which one applies.
//! - [`properties`]: librdkafka properties from `MODERATO_LIBRDKAFKA__*` and `@FILE` values.
//! - [`preflight`]: the start-up check that the brokers accept us and the topics exist.
//! - [`reload`]: hot model reload on SIGHUP or a changed file.
//! - [`embedded`]: librdkafka's in-process mock broker for the demo.
//! - [`feedback`]: moderator decisions joined with their comments' text, for retraining.

pub mod config;
pub mod consume;
pub mod deliver;
pub mod embedded;
pub mod event;
pub mod feedback;
pub mod fit;
pub mod guarantee;
pub mod inbound;
pub mod message;
pub mod observe;
pub mod pipeline;
pub mod preflight;
pub mod properties;
pub mod record;
pub mod reload;
pub mod work;

pub use config::{ServeConfig, ServeSettings};
pub use guarantee::Guarantee;
pub use pipeline::{run, NoObserver, Observe, RunSummary};
pub use reload::ModelSlot;
