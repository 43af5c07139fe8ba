//! An in-process Kafka broker (librdkafka's mock cluster) for the zero-setup demo and
//! `serve --embedded-broker`: real Kafka protocol on a loopback port, no persistence.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::config::ServeConfig;
use crate::error::StreamError;

/// A running mock cluster; it stops when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts one broker and creates `topics` (name, partitions) with the mock API (the admin
    /// `create_topics` request hangs on the mock cluster).
    pub fn start(topics: &[(&str, i32)]) -> Result<Self, StreamError> {
        let cluster = MockCluster::new(1).map_err(|e| StreamError::Embedded(e.to_string()))?;
        for (name, partitions) in topics {
            cluster
                .create_topic(name, *partitions, 1)
                .map_err(|e| StreamError::Embedded(format!("creating topic {name}: {e}")))?;
        }
        Ok(Self { cluster })
    }

    /// A broker with the topics of `cfg`: input and output with 3 partitions, dead letters 1.
    pub fn for_service(cfg: &ServeConfig) -> Result<Self, StreamError> {
        Self::start(&[
            (cfg.input_topic.as_str(), 3),
            (cfg.output_topic.as_str(), 3),
            (cfg.dlq_topic.as_str(), 1),
        ])
    }

    /// Makes the next `n` produce requests fail with `error` (fault injection for tests).
    pub fn fail_produce_requests(&self, n: usize, error: rdkafka::types::RDKafkaRespErr) {
        self.cluster
            .request_errors(rdkafka::types::RDKafkaApiKey::Produce, &vec![error; n]);
    }

    /// Takes broker `id` (the only one is 1) down: its connections close and it accepts none
    /// (fault injection for tests).
    pub fn broker_down(&self, id: i32) -> Result<(), StreamError> {
        self.cluster
            .broker_down(id)
            .map_err(|e| StreamError::Embedded(format!("broker {id} down: {e}")))
    }

    /// Brings broker `id` back up.
    pub fn broker_up(&self, id: i32) -> Result<(), StreamError> {
        self.cluster
            .broker_up(id)
            .map_err(|e| StreamError::Embedded(format!("broker {id} up: {e}")))
    }

    /// The address any Kafka client can bootstrap from.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
