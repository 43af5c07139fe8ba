//! The delivery guarantee of `moderato serve`: at-least-once (offsets stored after the outputs
//! are acknowledged) or exactly-once (each batch's outputs and input offsets in one Kafka
//! transaction; readers of the output must use `isolation.level=read_committed`).

use serde::Deserialize;

/// How each input message is answered when instances crash or rebalance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Every input answered at least once; a crash repeats what was in flight.
    #[default]
    AtLeastOnce,
    /// Every input answered exactly once, as seen by `read_committed` readers.
    ExactlyOnce,
}

impl Guarantee {
    /// Whether batches are delivered in transactions.
    pub fn transactional(self) -> bool {
        self == Guarantee::ExactlyOnce
    }
}
