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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::config::ServeSettings;

    #[test]
    fn the_file_names_a_guarantee_and_the_default_is_at_least_once() {
        let file: ServeSettings =
            toml::from_str("brokers = \"a:1\"\nguarantee = \"exactly-once\"").expect("parses");
        let cfg = file.resolve().expect("valid");
        assert_eq!(cfg.guarantee, Guarantee::ExactlyOnce);
        assert!(cfg.guarantee.transactional());
        let plain: ServeSettings = toml::from_str("brokers = \"a:1\"").expect("parses");
        assert_eq!(
            plain.resolve().expect("valid").guarantee,
            Guarantee::AtLeastOnce
        );
        assert!(toml::from_str::<ServeSettings>("guarantee = \"twice\"").is_err());
    }
}
