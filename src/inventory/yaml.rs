//! YAML and JSON inventories as Ansible's `yaml` plugin reads them: top-level groups, each
//! with optional `hosts:` (host → vars), `vars:` and `children:` (recursively groups).

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use super::{ini, Inventory};
use crate::data::yaml::parse_data;
use crate::data::SourceError;

/// Parses `text` as a YAML inventory document: `Ok(None)` when it is not one (empty, not a
/// mapping, or a plugin config), so the caller can try INI like Ansible does.
pub fn parse_source(text: &str, file: &Path) -> Result<Option<Map<String, Value>>, SourceError> {
    match parse_data(text, file)? {
        Value::Object(map) if !map.is_empty() && !map.get("plugin").is_some_and(truthy) => {
            Ok(Some(map))
        }
        _ => Ok(None),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
    }
}

/// Adds the groups, hosts and vars of a parsed YAML inventory to `inv`.
pub fn populate(inv: &mut Inventory, data: &Map<String, Value>, file: &Path) -> anyhow::Result<()> {
    for (name, group_data) in data {
        parse_group(inv, name, group_data)
            .with_context(|| format!("{}: invalid YAML inventory", file.display()))?;
    }
    Ok(())
}

fn parse_group(inv: &mut Inventory, group: &str, data: &Value) -> anyhow::Result<()> {
    let map = match data {
        Value::Null => {
            inv.add_group(group);
            return Ok(());
        }
        Value::Object(map) => map,
        // Ansible warns and skips non-mapping group definitions.
        _ => return Ok(()),
    };
    inv.add_group(group);
    for (key, section) in map {
        let section = match section {
            Value::String(s) if matches!(key.as_str(), "vars" | "children" | "hosts") => {
                let mut m = Map::new();
                m.insert(s.clone(), Value::Null);
                Value::Object(m)
            }
            other => other.clone(),
        };
        let entries = match &section {
            Value::Object(m) => m,
            Value::Null => continue,
            _ if matches!(key.as_str(), "vars" | "children" | "hosts") => bail!(
                "Invalid \"{key}\" entry for \"{group}\" group, requires a dictionary, found {} instead.",
                type_name(&section)
            ),
            _ => continue,
        };
        match key.as_str() {
            "vars" => {
                for (k, v) in entries {
                    inv.set_variable(group, k, v.clone())?;
                }
            }
            "children" => {
                for (child, child_data) in entries {
                    parse_group(inv, child, child_data)?;
                    inv.add_child(group, child)?;
                }
            }
            "hosts" => {
                for (pattern, host_vars) in entries {
                    let (hosts, port) =
                        ini::expand_host_pattern(pattern).map_err(anyhow::Error::msg)?;
                    let vars = match host_vars {
                        Value::Null => Map::new(),
                        Value::Object(m) => m.clone(),
                        other => {
                            bail!("Invalid data from file, expected dictionary and got: {other}")
                        }
                    };
                    for host in hosts {
                        inv.add_host(&host, Some(group), port)?;
                        for (k, v) in &vars {
                            inv.set_variable(&host, k, v.clone())?;
                        }
                    }
                }
            }
            // Ansible warns about unexpected keys and skips them.
            _ => {}
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::String(_) => "str",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        Value::Object(_) => "dict",
        Value::Null => "NoneType",
    }
}
