use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use super::{AsMode, Exemptions, Mode, PolicyError, RuleConfig, WhenUnavailable};
use crate::model::labels::{check_label_key, check_label_value};

/// Where a label rule reads the text its pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum LabelSource {
    /// The node's name: `from: nodeName`.
    NodeName,
    /// The value of a label the node already has: `from: {label: example.com/rack-id}`.
    Label(String),
}

/// Derives topology labels from a node: `pattern` is matched against the source, and each
/// value of `set` is a template in which `$name` / `${name}` stand for the named captures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelRule {
    /// Shown in warnings, so a person can find the rule in the policy.
    pub name: String,
    pub from: LabelSource,
    /// A regular expression (Rust `regex` syntax) with named captures; it need not match the
    /// whole source (anchor it with ^ and $ for that). A node it does not match is left alone.
    pub pattern: String,
    /// Label key → value template.
    pub set: BTreeMap<String, String>,
    /// Replace a different value the node already has (default: keep it and warn).
    #[serde(default)]
    pub overwrite: bool,
    #[serde(skip)]
    compiled: Option<Regex>,
}

impl LabelRule {
    /// The compiled pattern (compiled once, when the policy is loaded).
    pub fn regex(&self) -> Option<&Regex> {
        self.compiled.as_ref()
    }
}

/// Keeping `failure-domain.beta.kubernetes.io/*` and `topology.kubernetes.io/*` in step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DeprecatedLabels {
    /// Set the GA `topology.kubernetes.io/zone|region` from the beta labels when missing.
    pub ga_from_beta: bool,
    /// Set the beta `failure-domain.beta.kubernetes.io/zone|region` from the GA labels when
    /// missing, for old PVs whose node affinity still uses the beta keys.
    pub beta_from_ga: bool,
}

impl Default for DeprecatedLabels {
    fn default() -> Self {
        Self {
            ga_from_beta: true,
            beta_from_ga: false,
        }
    }
}

rule_config! {
    /// Mutating, Node CREATE/UPDATE: topology labels derived by policy. Never denies.
    pub struct NodeTopologyConfig {
        mode: Mode = Mode::Enforce,
        pub label_rules: Vec<LabelRule> = Vec::new(),
        pub deprecated_labels: DeprecatedLabels = DeprecatedLabels::default(),
    }
}

impl NodeTopologyConfig {
    pub(crate) fn validate(&mut self, field: &str) -> Result<(), PolicyError> {
        self.exemptions.validate(&format!("{field}.exemptions"))?;
        for (i, rule) in self.label_rules.iter_mut().enumerate() {
            let at = format!("{field}.labelRules[{i}]");
            if rule.name.trim().is_empty() {
                return Err(PolicyError::invalid(
                    format!("{at}.name"),
                    "must not be empty",
                ));
            }
            if let LabelSource::Label(key) = &rule.from {
                check_label_key(key)
                    .map_err(|m| PolicyError::invalid(format!("{at}.from.label"), m))?;
            }
            let regex = Regex::new(&rule.pattern)
                .map_err(|e| PolicyError::invalid(format!("{at}.pattern"), e.to_string()))?;
            if rule.set.is_empty() {
                return Err(PolicyError::invalid(
                    format!("{at}.set"),
                    "names no label to set",
                ));
            }
            let captures: Vec<&str> = regex.capture_names().flatten().collect();
            for (key, template) in &rule.set {
                check_label_key(key).map_err(|m| PolicyError::invalid(format!("{at}.set"), m))?;
                for name in template_references(template) {
                    if !captures.contains(&name.as_str()) && name.parse::<usize>().is_err() {
                        return Err(PolicyError::invalid(
                            format!("{at}.set.{key}"),
                            format!(
                                "template {template:?} uses ${name}, but the pattern has no capture named {name:?} (it has: {})",
                                if captures.is_empty() {
                                    "none".to_owned()
                                } else {
                                    captures.join(", ")
                                }
                            ),
                        ));
                    }
                }
                // A template without references is a fixed value: check it now.
                if !template.contains('$') {
                    check_label_value(template)
                        .map_err(|m| PolicyError::invalid(format!("{at}.set.{key}"), m))?;
                }
            }
            rule.compiled = Some(regex);
        }
        Ok(())
    }
}

/// The capture names a `regex` replacement template refers to (`$name`, `${name}`).
fn template_references(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        rest = &rest[pos + 1..];
        if let Some(stripped) = rest.strip_prefix('$') {
            rest = stripped; // `$$` is a literal dollar
            continue;
        }
        let name: String = if let Some(braced) = rest.strip_prefix('{') {
            braced.chars().take_while(|c| *c != '}').collect()
        } else {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        if !name.is_empty() {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::super::Policy;

    fn policy(rules: &str) -> Result<Policy, String> {
        Policy::parse(&format!(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  nodeTopology:\n    labelRules:\n{rules}"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn compiles_a_name_pattern_rule() {
        let p = policy(
            "    - name: zones\n      from: nodeName\n      pattern: '^(?P<region>[a-z]+-[a-z]+)-(?P<zone>[a-z])-'\n      set:\n        topology.kubernetes.io/region: '${region}'\n        topology.kubernetes.io/zone: '${region}-${zone}'\n",
        )
        .unwrap();
        assert!(p.rules.node_topology.label_rules[0].regex().is_some());
    }

    #[test]
    fn rejects_unknown_captures_bad_regex_and_bad_keys() {
        let err = policy("    - name: r\n      from: {label: example.com/rack-id}\n      pattern: '(?P<rack>.+)'\n      set: {rack: '${row}'}\n").unwrap_err();
        assert!(
            err.contains("labelRules[0].set.rack") && err.contains("row"),
            "{err}"
        );
        let err = policy("    - name: r\n      from: nodeName\n      pattern: '(unclosed'\n      set: {rack: x}\n").unwrap_err();
        assert!(err.contains("labelRules[0].pattern"), "{err}");
        let err = policy(
            "    - name: r\n      from: nodeName\n      pattern: 'x'\n      set: {'Bad Key': x}\n",
        )
        .unwrap_err();
        assert!(err.contains("Bad Key"), "{err}");
        let err = policy("    - name: r\n      from: nodeName\n      pattern: 'x'\n      set: {rack: 'not valid!'}\n").unwrap_err();
        assert!(err.contains("labelRules[0].set.rack"), "{err}");
    }
}
