//! Error types of the library, one enum per concern; the binary wraps them with `anyhow`.

use std::path::PathBuf;

/// A configuration (training TOML, featurizer or service settings) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field holds a value outside its allowed range.
    #[error("invalid config field `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `featurizer.hash_bits`.
        field: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A librdkafka property given as `@PATH` whose file cannot be read.
    #[error("cannot read librdkafka property `{property}` from {path}: {source}")]
    PropertyFile {
        /// The property, e.g. `sasl.password`.
        property: String,
        /// The file named after `@`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("cannot parse config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the line and field.
        message: String,
    },
}

/// A model file that cannot be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read or written.
    #[error("model file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not start with the moderato magic bytes.
    #[error("{0} is not a moderato model file (bad magic bytes); train one with `moderato train`")]
    BadMagic(PathBuf),
    /// The file was written by an incompatible format version.
    #[error("model file {path} has format version {found}, this build reads versions 1 to {supported}; retrain it (or, for a newer file, upgrade moderato)")]
    Version {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The file is shorter or longer than its header says.
    #[error("model file {path} is truncated or has trailing bytes: expected {expected} bytes, found {actual}; copy it again")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Size the header promises.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// The SHA-256 checksum does not match the content.
    #[error("model file {path} is corrupt: SHA-256 of the content is {actual}, the file records {expected}; copy it again or retrain")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Recorded checksum.
        expected: String,
        /// Computed checksum.
        actual: String,
    },
    /// The file is larger than any model this build loads (it is not read).
    #[error("model file {path} is {size} bytes, over the limit of {limit}; is it a moderato model file? (`moderato train` writes one)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit (`file::MAX_FILE_BYTES`).
        limit: u64,
    },
    /// A hot reload whose heads differ from the serving model's (the old model keeps serving).
    #[error("model file {path} has heads {found}, the serving model has {serving}; a reload may only change weights and calibration, so restart the service to change heads")]
    HeadsChanged {
        /// The file.
        path: PathBuf,
        /// The serving model's heads (name, kind and classes).
        serving: String,
        /// The new file's heads.
        found: String,
    },
    /// The header parses but is inconsistent with the weights or with itself.
    #[error("model file {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },
    /// `MODERATO_MODEL` names a file that is not there (never a fallback to another model).
    #[error("MODERATO_MODEL is {0} and there is no such file: fix the path or unset it")]
    EnvMissing(PathBuf),
    /// No model named, none in the places looked in, and none built in.
    #[error(
        "no --model given, MODERATO_MODEL is not set, no model in {looked}, and this binary was \
         built without `embedded-model`: pass --model, or train one with `moderato train \
         --config training/default.toml`"
    )]
    NotFound {
        /// The places looked in, in order.
        looked: String,
    },
    /// The built-in model was asked for, and this build has none.
    #[error("this binary was built without `embedded-model`: pass --model")]
    NotBuiltIn,
}

/// Labelled data that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The CSV file could not be opened or parsed.
    #[error("data file {path}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The reader's message (with the record number).
        message: String,
    },
    /// A required column is missing.
    #[error("data file {path} has no column `{column}` (columns: {available})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The columns the header has.
        available: String,
    },
    /// Nothing usable was left after filtering.
    #[error("data file {path}: {reason}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Why nothing is left.
        reason: String,
    },
}

/// One bad input line or message of `classify` / `serve`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The payload is not valid UTF-8.
    #[error("payload is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    /// The payload is not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// The object has no string `text` field.
    #[error("missing `text` field (a string)")]
    NoText,
    /// The `text` field is empty.
    #[error("`text` is empty")]
    EmptyText,
    /// The message has no payload at all (a tombstone).
    #[error("message has no payload")]
    NoPayload,
    /// Classifying the message failed inside moderato (a bug; the message is kept).
    #[error("internal error while classifying: {0}")]
    Internal(String),
    /// A header cannot be represented (its key is not UTF-8); the message is kept whole.
    #[error("unreadable header: {0}")]
    BadHeader(String),
    /// The labelled record would not fit in a Kafka record even without its passthrough fields
    /// (its id alone is too large); the message is dead-lettered instead.
    #[error("the labelled record is {size} bytes, over the limit of {limit} even without its passthrough fields")]
    RecordTooLarge {
        /// The record's size.
        size: usize,
        /// The limit (`ServeConfig::max_record_bytes`).
        limit: usize,
    },
    /// The payload exceeds the service's `max_payload_bytes`.
    #[error("payload is {size} bytes, over the limit of {limit} (max_payload_bytes)")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl InputError {
    /// A stable, short reason code (dead-letter header, metric label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotUtf8(_) => "not_utf8",
            Self::NotJson(_) => "not_json",
            Self::NoText => "no_text",
            Self::EmptyText => "empty_text",
            Self::NoPayload => "no_payload",
            Self::TooLarge { .. } => "too_large",
            Self::RecordTooLarge { .. } => "record_too_large",
            Self::Internal(_) => "internal",
            Self::BadHeader(_) => "bad_header",
        }
    }
}

/// A failure of the streaming service that stops it (bad input never does: it is dead-lettered).
#[cfg(feature = "service")]
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The service settings are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The model could not be loaded at start.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A Kafka client could not be created or failed in a way retrying cannot fix.
    #[error("kafka {what}: {source}")]
    Kafka {
        /// What was being done, e.g. "consumer config".
        what: &'static str,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// A file the service writes could not be opened or written.
    #[error("{what} {path}: {source}")]
    File {
        /// Which file, e.g. "feedback file".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another producer registered this instance's transactional id (exactly-once).
    #[error(
        "another producer took over transactional id {transactional_id}: either a second \
         instance runs with the same --instance (give each instance its own), or this instance \
         was replaced by a newer one; stopping so that only one of them writes"
    )]
    Fenced {
        /// The transactional id both use.
        transactional_id: String,
    },
    /// The in-process broker of `demo` / `--embedded-broker` could not start.
    #[error("embedded broker: {0}")]
    Embedded(String),
}
