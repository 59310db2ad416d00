//! `policy check`: each file's verdict, and for a valid one what each rule of the table will
//! do under it, so a reviewer sees `restore-readiness: warn` before it ships.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Error, Outcome};
use crate::policy::{Mode, Policy, PolicyFile, WhenUnavailable};
use crate::rules::RULES;

/// One line per rule: its name, its policy key, and its effective mode and
/// `whenStateUnavailable` under `policy`.
pub fn summary(policy: &Policy) -> String {
    let mut out = String::new();
    for rule in RULES {
        let settings = (rule.settings)(policy);
        let mode = match settings.mode {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        };
        let when = match settings.when_unavailable {
            WhenUnavailable::Allow => "allow",
            WhenUnavailable::Deny => "deny",
        };
        let _ = writeln!(
            out,
            "  {} (rules.{}): {mode}, whenStateUnavailable: {when}",
            rule.id, rule.policy_key
        );
    }
    out
}

pub fn check(files: &[PathBuf]) -> Result<Outcome, Error> {
    let mut invalid = 0;
    for file in files {
        match PolicyFile::load(file) {
            Ok(loaded) => print!("{}: valid\n{}", file.display(), summary(&loaded.policy)),
            Err(e) => {
                // The error names the file.
                println!("{e}");
                invalid += 1;
            }
        }
    }
    if invalid == 0 {
        Ok(Outcome::Success)
    } else {
        Err(Error::Input(format!(
            "{invalid} of {} policy files are invalid",
            files.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_rule_of_the_table_with_its_effective_mode() {
        let policy = Policy::parse(
            "apiVersion: storage-admission.io/v1alpha1\nkind: AdmissionPolicy\nrules:\n  restoreReadiness:\n    mode: warn\n    whenStateUnavailable: deny\n  bindingMode:\n    mode: mutate\n",
        )
        .unwrap();
        let text = summary(&policy);
        assert_eq!(text.lines().count(), RULES.len());
        assert!(
            text.contains(
                "  restore-readiness (rules.restoreReadiness): warn, whenStateUnavailable: deny\n"
            ),
            "{text}"
        );
        // bindingMode's own `mutate` acts, so it is enforce for the edge.
        assert!(
            text.contains(
                "  binding-mode (rules.bindingMode): enforce, whenStateUnavailable: allow\n"
            ),
            "{text}"
        );
    }
}
