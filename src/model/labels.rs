//! Kubernetes label key and value syntax, checked before a label is ever patched.

/// Why a label key or value is not valid; the message is what a person should read.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!("{value:?} is longer than 63 characters"));
    }
    if value.is_empty() {
        return Ok(());
    }
    if !is_name_part(value) {
        return Err(format!(
            "{value:?} must consist of letters, digits, '-', '_' or '.', and begin and end with a letter or digit"
        ));
    }
    Ok(())
}

pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.is_empty() || name.len() > 63 || !is_name_part(name) {
        return Err(format!(
            "label key {key:?}: the name part must be 1-63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
        ));
    }
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(format!(
            "label key {key:?}: the prefix must be a DNS subdomain (e.g. example.com)"
        ));
    }
    Ok(())
}

fn is_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    !bytes.is_empty()
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|&b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
}

pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_label_key("topology.kubernetes.io/zone").is_ok());
        assert!(check_label_key("rack").is_ok());
        assert!(check_label_key("topology.example.com/row").is_ok());
        assert!(check_label_key("Example.com/x").is_err());
        assert!(check_label_key("/x").is_err());
        assert!(check_label_key("a/").is_err());
        assert!(check_label_key(&"x".repeat(64)).is_err());
    }

    #[test]
    fn values() {
        assert!(check_label_value("cn-hangzhou-b").is_ok());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("-b").is_err());
        assert!(check_label_value("a b").is_err());
        assert!(check_label_value("zoné").is_err());
        assert!(
            check_label_value(&"a".repeat(64))
                .unwrap_err()
                .contains("63")
        );
    }
}
