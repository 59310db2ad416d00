//! YAML/JSON document parsing shared by the state file, manifests and the policy file.

use serde_json::Value;

/// Parses a stream of YAML documents (JSON is accepted as YAML; a JSON text is parsed by
/// serde_json directly, which is faster for large `-o json` dumps). Errors carry line and column.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut docs = Vec::new();
        for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            docs.push(doc.map_err(|e| e.to_string())?);
        }
        return Ok(docs);
    }
    serde_saphyr::from_multiple::<Value>(text).map_err(|e| e.to_string())
}
