//! Printing: violations for people and machines, and JSON/YAML documents.
//!
//! Human violations are grouped under a header `FILE: Kind/namespace/name`; each
//! violation line starts with its field path (`spec.networks[0].name: …`) so it can be
//! grepped and matched against an editor's notion of the document. The JSON form is one
//! array of [`Record`]s for the whole run. Both keep the validator's order.

use std::io::Write;

use netbind_spec::validate::{Report, Violation};
use serde::Serialize;

/// One violation in `netbind validate --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub file: String,
    /// `Kind/namespace/name`.
    pub object: String,
    pub path: String,
    pub rule: String,
    pub message: String,
}

impl Record {
    pub fn new(file: &str, object: &str, v: &Violation) -> Record {
        Record {
            file: file.to_string(),
            object: object.to_string(),
            path: v.path.clone(),
            rule: v.rule.to_string(),
            message: v.message.clone(),
        }
    }
}

/// The header line and one line per violation.
pub fn human_violations(file: &str, object: &str, violations: &[Violation]) -> String {
    let mut out = format!("{file}: {object}\n");
    for v in violations {
        out.push_str(&format!("{}: {}\n", v.path, v.message));
    }
    out
}

/// Unknown-field warnings, one line each, for stderr.
pub fn warnings(report: &Report) -> String {
    report
        .warnings
        .iter()
        .map(|w| format!("warning: {}: {}\n", w.path, w.message))
        .collect()
}

/// Pretty JSON with a final newline.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

pub fn yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_saphyr::to_string(value)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Writes to stdout; a closed pipe (`netbind plan … | head`) is not an error worth a panic.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

pub fn stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(path: &str, message: &str) -> Violation {
        Violation {
            path: path.into(),
            rule: "some-rule",
            message: message.into(),
        }
    }

    #[test]
    fn violation_lines_start_with_the_path_under_a_header() {
        let text = human_violations(
            "vm.yaml",
            "VirtualMachine/default/a",
            &[violation(
                "spec.template.spec.networks[1].name",
                "duplicate network name",
            )],
        );
        assert_eq!(
            text,
            "vm.yaml: VirtualMachine/default/a\nspec.template.spec.networks[1].name: duplicate network name\n"
        );
    }

    #[test]
    fn json_records_have_the_contract_fields_in_order() {
        let r = Record::new(
            "a.yaml",
            "VirtualMachineInstance/ns/x",
            &violation("spec.networks[0]", "m"),
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"file":"a.yaml","object":"VirtualMachineInstance/ns/x","path":"spec.networks[0]","rule":"some-rule","message":"m"}"#
        );
    }
}
