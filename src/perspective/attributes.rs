//! Which head answers which Perspective attribute. The default table maps Perspective's names
//! onto the shipped heads; every binary head also answers to its own name in upper case, and
//! `--attribute NAME=HEAD` adds or replaces an entry. An attribute with no head (THREAT,
//! SEVERE_TOXICITY today) is refused: it never gets a made-up score.

use serde::Serialize;

use crate::model::{HeadKind, Model};

/// Perspective's attribute names and the heads of the default model that answer them.
pub const DEFAULT_TABLE: &[(&str, &str)] = &[
    ("TOXICITY", "offensive"),
    ("IDENTITY_ATTACK", "hate"),
    ("INSULT", "insult"),
    ("PROFANITY", "obscene"),
];

/// The attribute table: configured entries (defaults, then overrides), resolved against the
/// serving model at each request, so a hot-reloaded model with other heads is served right.
#[derive(Clone, Debug)]
pub struct Attributes {
    entries: Vec<(String, String)>,
}

/// One attribute as `GET /v1alpha1/attributes` lists it.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AttributeInfo {
    /// Attribute name.
    pub attribute: String,
    /// The head that scores it.
    pub head: String,
    /// Scripts the head was trained on (`ar`, `latin`); empty: no claim.
    pub scripts: Vec<String>,
}

impl Default for Attributes {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Attributes {
    /// The default table with `overrides` (`ATTRIBUTE`, `head`) on top.
    pub fn new(overrides: &[(String, String)]) -> Self {
        let mut entries: Vec<(String, String)> = DEFAULT_TABLE
            .iter()
            .map(|(a, h)| (a.to_string(), h.to_string()))
            .collect();
        for (attribute, head) in overrides {
            let attribute = attribute.trim().to_ascii_uppercase();
            entries.retain(|(a, _)| *a != attribute);
            entries.push((attribute, head.trim().to_string()));
        }
        Self { entries }
    }

    /// The index of the binary head answering `attribute` in `model`, if any.
    pub fn head(&self, attribute: &str, model: &Model) -> Option<usize> {
        let binary = |name: &str| {
            model
                .heads()
                .iter()
                .position(|h| h.kind == HeadKind::Binary && h.name == name)
        };
        match self.entries.iter().find(|(a, _)| a == attribute) {
            Some((_, head)) => binary(head),
            None => model.heads().iter().position(|h| {
                h.kind == HeadKind::Binary && h.name.to_ascii_uppercase() == attribute
            }),
        }
    }

    /// Refuses an entry whose head `model` does not have as a binary head (a typo in
    /// `--attribute`), naming the heads it has.
    pub fn check(&self, model: &Model) -> Result<(), String> {
        let binary: Vec<&str> = model
            .heads()
            .iter()
            .filter(|h| h.kind == HeadKind::Binary)
            .map(|h| h.name.as_str())
            .collect();
        let default = |a: &str, h: &str| DEFAULT_TABLE.contains(&(a, h));
        for (attribute, head) in &self.entries {
            // A default entry may name a head this model lacks: it is simply not served.
            if !binary.contains(&head.as_str()) && !default(attribute, head) {
                return Err(format!(
                    "{attribute}={head}: the model has no binary head `{head}` (it has {})",
                    binary.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Every attribute `model` can answer, sorted by name.
    pub fn list(&self, model: &Model) -> Vec<AttributeInfo> {
        let mut names: Vec<String> = self.entries.iter().map(|(a, _)| a.clone()).collect();
        names.extend(model.heads().iter().map(|h| h.name.to_ascii_uppercase()));
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|attribute| {
                let head = &model.heads()[self.head(&attribute, model)?];
                Some(AttributeInfo {
                    head: head.name.clone(),
                    scripts: head.scripts().into_iter().map(String::from).collect(),
                    attribute,
                })
            })
            .collect()
    }

    /// The names of [`Attributes::list`].
    pub fn names(&self, model: &Model) -> Vec<String> {
        self.list(model).into_iter().map(|a| a.attribute).collect()
    }
}

/// Parses `--attribute NAME=HEAD`.
pub fn parse_override(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, h)) if !a.trim().is_empty() && !h.trim().is_empty() => {
            Ok((a.trim().to_ascii_uppercase(), h.trim().to_string()))
        }
        _ => Err(format!(
            "`{s}` is not ATTRIBUTE=HEAD, e.g. TOXICITY=offensive"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    #[test]
    fn defaults_overrides_and_own_names_resolve_to_binary_heads() {
        let model = fixtures::model();
        let names: Vec<&str> = model.heads().iter().map(|h| h.name.as_str()).collect();
        assert!(names.contains(&"offensive"), "fixture heads: {names:?}");
        let table = Attributes::default();
        let offensive = table.head("TOXICITY", &model);
        assert!(offensive.is_some());
        assert_eq!(table.head("OFFENSIVE", &model), offensive);
        assert_eq!(
            table.head("PROFANITY", &model),
            table.head("OBSCENE", &model)
        );
        assert!(table.head("PROFANITY", &model).is_some());
        assert_eq!(
            table.head("INSULT", &model),
            None,
            "the fixture has no insult head"
        );
        assert_eq!(table.head("THREAT", &model), None);
        assert_eq!(table.head("toxicity", &model), None, "names are upper case");

        let table = Attributes::new(&[("threat".into(), "offensive".into())]);
        assert_eq!(table.head("THREAT", &model), offensive);
        assert!(table.names(&model).contains(&"THREAT".to_string()));
        assert!(table.check(&model).is_ok());
        assert!(Attributes::new(&[("X".into(), "nosuchhead".into())])
            .check(&model)
            .is_err());
        assert!(parse_override("TOXICITY").is_err());
        assert_eq!(
            parse_override(" toxicity = hate ").ok(),
            Some(("TOXICITY".into(), "hate".into()))
        );
    }
}
