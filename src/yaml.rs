//! YAML/JSON document parsing shared by the state file, manifests and the policy file.

use serde_json::Value;

/// Parses a stream of YAML documents (JSON is accepted as YAML; a JSON text is parsed by
/// serde_json directly, which is faster for large `-o json` dumps). Errors carry line and column.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    documents_as(text)
}

/// Like [`documents`], into any type: a type with its own `Deserialize` can convert a document
/// while it is read instead of building a [`Value`] tree of it first (the state file does).
/// Empty YAML documents are skipped.
pub fn documents_as<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut docs = Vec::new();
        for doc in serde_json::Deserializer::from_str(text).into_iter::<T>() {
            docs.push(doc.map_err(|e| e.to_string())?);
        }
        return Ok(docs);
    }
    serde_saphyr::from_multiple::<T>(text).map_err(|e| e.to_string())
}
