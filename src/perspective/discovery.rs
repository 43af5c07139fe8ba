//! `GET /$discovery/rest?version=v1alpha1`: a Google API discovery document for the
//! `commentanalyzer` v1alpha1 methods this server answers, whose `rootUrl` is this server. With
//! it, Google's generated clients (e.g. `googleapiclient.discovery.build("commentanalyzer",
//! "v1alpha1", discoveryServiceUrl=..., static_discovery=False)`) call moderato unchanged.
//! Written here from the message types in [`super::wire`], not copied from Google's document.

use serde_json::{json, Map, Value};

/// The API's name and version, as clients ask for them.
pub const NAME: &str = "commentanalyzer";
/// The only version served.
pub const VERSION: &str = "v1alpha1";

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn strings(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": description})
}

fn reference(schema: &str, description: &str) -> Value {
    json!({"$ref": schema, "description": description})
}

fn map_of(schema: &str, description: &str) -> Value {
    json!({"type": "object", "additionalProperties": {"$ref": schema}, "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn schema(id: &str, description: &str, properties: Value) -> (String, Value) {
    (
        id.to_string(),
        json!({"id": id, "type": "object", "description": description, "properties": properties}),
    )
}

fn score_type() -> Value {
    json!({"type": "string", "description": "Score type; only PROBABILITY is served.",
           "enum": ["SCORE_TYPE_UNSPECIFIED", "PROBABILITY", "STD_DEV_SCORE", "PERCENTILE", "RAW"]})
}

fn schemas() -> Map<String, Value> {
    let text_entry = reference("TextEntry", "The comment.");
    let context = reference("Context", "What the comment replies to (kept, not scored).");
    [
        schema("TextEntry", "A body of text.", json!({
            "text": string("UTF-8 text."),
            "type": {"type": "string", "enum": ["TEXT_TYPE_UNSPECIFIED", "PLAIN_TEXT", "HTML"],
                     "description": "Type of the text."},
        })),
        schema("Context", "What a comment replies to.", json!({
            "entries": {"type": "array", "items": {"$ref": "TextEntry"},
                        "description": "Earlier messages of the thread."},
            "articleAndParentComment": {"$ref": "ArticleAndParentComment",
                                        "description": "The article and the parent comment."},
        })),
        schema("ArticleAndParentComment", "An article and the comment replied to.", json!({
            "article": reference("TextEntry", "The article."),
            "parentComment": reference("TextEntry", "The parent comment."),
        })),
        schema("AttributeParameters", "Per-attribute options.", json!({
            "scoreType": score_type(),
            "scoreThreshold": {"type": "number", "format": "float",
                               "description": "Leave out scores below this."},
        })),
        schema("AnalyzeCommentRequest", "A comment to score.", json!({
            "comment": text_entry,
            "context": context,
            "requestedAttributes": map_of("AttributeParameters",
                "Attribute name to options; GET /v1alpha1/attributes lists the names served."),
            "languages": strings("Echoed back; scoring follows the detected language."),
            "spanAnnotations": boolean("Also return per-sentence scores."),
            "doNotStore": boolean("Keep nothing of the request: no live feed, cache or log."),
            "dropUnsupportedAttributes": boolean(
                "Leave out attributes not covered for the comment's language instead of failing."),
            "clientToken": string("Echoed back."),
            "sessionId": string("Accepted and ignored."),
            "communityId": string("The community; selects its calibration where there is one."),
        })),
        schema("Score", "A score and its type.", json!({
            "value": {"type": "number", "format": "float", "description": "The score."},
            "type": score_type(),
        })),
        schema("SpanScore", "The score of a span of the comment.", json!({
            "begin": {"type": "integer", "format": "int32",
                      "description": "First UTF-16 code unit of the span."},
            "end": {"type": "integer", "format": "int32",
                    "description": "One past the span's last UTF-16 code unit."},
            "score": reference("Score", "The span's score."),
        })),
        schema("AttributeScores", "The scores of one attribute.", json!({
            "summaryScore": reference("Score", "The whole comment's score."),
            "spanScores": {"type": "array", "items": {"$ref": "SpanScore"},
                           "description": "Per-sentence scores."},
        })),
        schema("ModelInfo", "The model that answered (moderato's addition).", json!({
            "name": string("Model name."),
            "version": string("Model version."),
            "sha256": string("SHA-256 of the model file."),
        })),
        schema("AnalyzeCommentResponse", "The scores of a comment.", json!({
            "attributeScores": map_of("AttributeScores", "Attribute name to scores."),
            "languages": strings("The request's languages."),
            "detectedLanguages": strings("Languages detected in the comment, most likely first."),
            "clientToken": string("The request's clientToken."),
            "model": reference("ModelInfo", "The model that answered."),
        })),
        schema("SuggestCommentScoreRequest", "A moderator's verdict on a comment.", json!({
            "comment": text_entry,
            "context": context,
            "attributeScores": map_of("AttributeScores",
                "Attribute name to the verdict's summaryScore (0 or 1)."),
            "languages": strings("Echoed back."),
            "communityId": string("The community; becomes the feedback line's domain."),
            "clientToken": string("Echoed back; its id becomes the feedback line's id."),
            "sessionId": string("Accepted and ignored."),
        })),
        schema("SuggestCommentScoreResponse", "The answer to a suggestion.", json!({
            "clientToken": string("The request's clientToken."),
            "detectedLanguages": strings("Languages detected in the comment."),
            "requestedLanguages": strings("The request's languages."),
        })),
    ]
    .into_iter()
    .collect()
}

fn method(name: &str, description: &str, request: &str, response: &str) -> Value {
    json!({
        "id": format!("{NAME}.comments.{name}"),
        "path": format!("{VERSION}/comments:{name}"),
        "flatPath": format!("{VERSION}/comments:{name}"),
        "httpMethod": "POST",
        "description": description,
        "parameters": {},
        "parameterOrder": [],
        "request": {"$ref": request},
        "response": {"$ref": response},
    })
}

/// The discovery document, with `root_url` (ending in `/`) as the server's address.
pub fn document(root_url: &str) -> Value {
    let query = |description: &str| json!({"type": "string", "location": "query", "description": description});
    json!({
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": format!("{NAME}:{VERSION}"),
        "name": NAME,
        "version": VERSION,
        "title": "moderato: Perspective-compatible comment analyzer",
        "description": "Self-hosted scores for reader comments, answering the Perspective API's analyze and suggestscore methods.",
        "protocol": "rest",
        "rootUrl": root_url,
        "servicePath": "",
        "baseUrl": root_url,
        "basePath": "",
        "batchPath": "batch",
        "parameters": {
            "key": query("API key (or the x-goog-api-key header)."),
            "alt": {"type": "string", "location": "query", "default": "json",
                    "enum": ["json"], "description": "Response format; only json."},
            "prettyPrint": {"type": "boolean", "location": "query", "default": "true",
                            "description": "Accepted and ignored."},
            "fields": query("Accepted and ignored."),
            "quotaUser": query("Accepted and ignored."),
        },
        "resources": {"comments": {"methods": {
            "analyze": method("analyze", "Scores a comment for the requested attributes.",
                              "AnalyzeCommentRequest", "AnalyzeCommentResponse"),
            "suggestscore": method("suggestscore",
                "Records a moderator's verdict as a feedback line for calibration and training.",
                "SuggestCommentScoreRequest", "SuggestCommentScoreResponse"),
        }}},
        "schemas": schemas(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_names_a_schema_and_methods_point_here() {
        let doc = document("http://127.0.0.1:8080/");
        let schemas = doc["schemas"].as_object().expect("schemas");
        let mut refs = Vec::new();
        fn collect(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| collect(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        collect(&doc, &mut refs);
        assert!(refs.len() > 10);
        for r in refs {
            assert!(schemas.contains_key(&r), "dangling $ref {r}");
        }
        assert_eq!(doc["rootUrl"], "http://127.0.0.1:8080/");
        assert_eq!(
            doc["resources"]["comments"]["methods"]["analyze"]["path"],
            "v1alpha1/comments:analyze"
        );
    }
}
