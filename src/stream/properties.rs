//! librdkafka pass-through properties from outside the command line, so a secret never has to
//! be an argument (visible in `ps`, shell history, orchestrator specs):
//! `MODERATO_LIBRDKAFKA__SASL_PASSWORD=...` sets `sasl.password`, and a value `@/path/file` is
//! read from that file. Also which property names hold secrets, for redaction in logs.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::ConfigError;

/// Prefix of the environment variables that set librdkafka properties.
pub const ENV_PREFIX: &str = "MODERATO_LIBRDKAFKA__";

/// The properties set by `MODERATO_LIBRDKAFKA__NAME` variables among `vars`: NAME lower-cased,
/// `_` read as `.` (`..._SASL_PASSWORD` → `sasl.password`, `..._CONSUMER_FETCH_WAIT_MAX_MS` →
/// `consumer.fetch.wait.max.ms`).
pub fn from_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut props = BTreeMap::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let property = rest.to_ascii_lowercase().replace('_', ".");
        if property.is_empty() || property.split('.').any(str::is_empty) {
            return Err(ConfigError::Invalid {
                field: name.to_string(),
                reason: format!(
                    "not a property name: use {ENV_PREFIX}SASL_PASSWORD for sasl.password \
                     (one `_` for each `.`)"
                ),
            });
        }
        let value = value.into_string().map_err(|_| ConfigError::Invalid {
            field: name.to_string(),
            reason: "the value is not UTF-8".into(),
        })?;
        props.insert(property, value);
    }
    Ok(props)
}

/// Replaces every value `@PATH` with the content of the file PATH (trailing line breaks
/// removed); `@@...` stands for a literal value starting with `@`. Returns the names whose
/// value came from a file. An unreadable file is an error naming the property and the path.
pub fn read_files(props: &mut BTreeMap<String, String>) -> Result<BTreeSet<String>, ConfigError> {
    let mut from_files = BTreeSet::new();
    for (name, value) in props.iter_mut() {
        if let Some(literal) = value.strip_prefix("@@") {
            *value = format!("@{literal}");
            continue;
        }
        let Some(path) = value.strip_prefix('@') else {
            continue;
        };
        let path = PathBuf::from(path);
        let text = std::fs::read(&path)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8")
                })
            })
            .map_err(|source| ConfigError::PropertyFile {
                property: name.clone(),
                path: path.clone(),
                source,
            })?;
        *value = text.trim_end_matches(['\n', '\r']).to_string();
        from_files.insert(name.clone());
    }
    Ok(from_files)
}

/// A client-config error without the property's value: librdkafka's message (and rdkafka's
/// `Display`) repeat the value, which may be a secret under a misspelt or unknown name
/// (`sasl.pasword`, `sasl.jaas.config`). Every client moderato creates maps its error through
/// this.
pub fn hide_value(e: rdkafka::error::KafkaError) -> rdkafka::error::KafkaError {
    match e {
        rdkafka::error::KafkaError::ClientConfig(res, desc, key, value) => {
            let desc = if value.is_empty() {
                desc
            } else {
                desc.replace(&value, "***")
            };
            rdkafka::error::KafkaError::ClientConfig(res, desc, key, "***".into())
        }
        other => other,
    }
}

/// Whether a property's value is a secret (never logged): passwords, secrets, keys, tokens,
/// JAAS and OAUTHBEARER configurations, credentials.
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key",
        "token",
        "jaas",
        "oauthbearer.config",
        "credential",
    ]
    .iter()
    .any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_config_error_never_carries_the_value() {
        let mut c = rdkafka::ClientConfig::new();
        c.set("sasl.pasword", "hunter2-secret");
        let e = c
            .create::<rdkafka::producer::BaseProducer>()
            .err()
            .expect("an unknown property is refused");
        assert!(e.to_string().contains("hunter2"), "rdkafka repeats it: {e}");
        let hidden = hide_value(e).to_string();
        assert!(
            !hidden.contains("hunter2") && hidden.contains("sasl.pasword"),
            "{hidden}"
        );
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn environment_variables_name_properties() {
        let props = from_env(vars(&[
            ("MODERATO_LIBRDKAFKA__SASL_PASSWORD", "hunter2"),
            ("MODERATO_LIBRDKAFKA__CONSUMER_FETCH_WAIT_MAX_MS", "10"),
            ("MODERATO_BROKERS", "a:1"),
            ("PATH", "/bin"),
        ]))
        .expect("valid");
        assert_eq!(props.len(), 2, "{props:?}");
        assert_eq!(props["sasl.password"], "hunter2");
        assert_eq!(props["consumer.fetch.wait.max.ms"], "10");
        let err = from_env(vars(&[("MODERATO_LIBRDKAFKA__SASL__PASSWORD", "x")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("MODERATO_LIBRDKAFKA__SASL__PASSWORD"),
            "{err}"
        );
    }

    #[test]
    fn at_values_are_read_from_files_and_a_missing_file_names_property_and_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let mut props = BTreeMap::from([
            ("sasl.password".to_string(), format!("@{}", file.display())),
            ("sasl.username".to_string(), "@@team".to_string()),
            ("client.rack".to_string(), "eu-1".to_string()),
        ]);
        let from_files = read_files(&mut props).expect("readable");
        assert_eq!(props["sasl.password"], "s3cret", "trailing newline trimmed");
        assert_eq!(props["sasl.username"], "@team", "@@ is a literal @");
        assert_eq!(props["client.rack"], "eu-1");
        assert_eq!(from_files, BTreeSet::from(["sasl.password".to_string()]));

        let missing = dir.path().join("nope");
        let mut props = BTreeMap::from([(
            "ssl.key.password".to_string(),
            format!("@{}", missing.display()),
        )]);
        let err = read_files(&mut props).unwrap_err().to_string();
        assert!(err.contains("`ssl.key.password`"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn secrets_are_recognised_by_name() {
        for name in [
            "sasl.password",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.jaas.config",
            "producer.sasl.password",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret(name), "{name}");
        }
    }
}
