use crate::ConfigError;

/// Applies one `section.key=value` override to a parsed TOML document.
///
/// The value is read as a TOML value (`10`, `0.5`, `true`, `[96,96,96]`, `"text"`) and falls back
/// to a plain string when it is not one, so `--set data.dataset=/data/Task01` works unquoted.
/// Dotted keys may be nested deeper than one section (`loss.dice.weight=1`).
pub fn apply_override(doc: &mut toml::Table, spec: &str) -> Result<(), ConfigError> {
    let err = |reason: &str| ConfigError::Override {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (key, raw) = spec.split_once('=').ok_or_else(|| err("missing '='"))?;
    let parts: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(err("the key must name a section and a key"));
    }
    let value = parse_value(raw.trim());
    let mut table = doc;
    for part in &parts[..parts.len() - 1] {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| err(&format!("'{part}' is a value, not a section")))?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    // Parse as the right-hand side of a TOML assignment.
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed_or_strings() {
        let mut t = toml::Table::new();
        apply_override(&mut t, "train.epochs=10").unwrap();
        apply_override(&mut t, "train.patch_size=[96,96,96]").unwrap();
        apply_override(&mut t, "data.dataset=/data/Task01").unwrap();
        assert_eq!(t["train"]["epochs"].as_integer(), Some(10));
        assert_eq!(t["train"]["patch_size"].as_array().unwrap().len(), 3);
        assert_eq!(t["data"]["dataset"].as_str(), Some("/data/Task01"));
    }

    #[test]
    fn malformed_override_is_an_error() {
        let mut t = toml::Table::new();
        assert!(apply_override(&mut t, "epochs").is_err());
        assert!(apply_override(&mut t, "epochs=3").is_err());
        apply_override(&mut t, "train.epochs=3").unwrap();
        assert!(apply_override(&mut t, "train.epochs.x=3").is_err());
    }
}
