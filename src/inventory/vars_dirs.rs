//! `group_vars/` and `host_vars/` beside an inventory source or a playbook: a file named after
//! the group/host (no extension, `.yml`, `.yaml`, `.json`) or a directory read in lexical order.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Map, Value};

use crate::data::yaml::load_vars_file;

/// Extensions Ansible accepts for vars files (`C.YAML_FILENAME_EXTENSIONS`).
const VARS_EXTENSIONS: [&str; 3] = [".yml", ".yaml", ".json"];

/// Which kind of entity a vars directory is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// `group_vars/<group>`
    Group,
    /// `host_vars/<host>`
    Host,
}

impl Entity {
    fn subdir(self) -> &'static str {
        match self {
            Entity::Group => "group_vars",
            Entity::Host => "host_vars",
        }
    }
}

/// The files holding vars for `name` under `basedir/group_vars` (or `host_vars`), in load order.
pub fn find_vars_files(basedir: &Path, entity: Entity, name: &str) -> Vec<PathBuf> {
    if name.starts_with('/') {
        return Vec::new();
    }
    let dir = basedir.join(entity.subdir());
    if !dir.is_dir() {
        return Vec::new();
    }
    let base = dir.join(name);
    for ext in std::iter::once("").chain(VARS_EXTENSIONS) {
        let candidate = PathBuf::from(format!("{}{ext}", base.display()));
        if candidate.is_dir() {
            let mut found = Vec::new();
            collect_dir(&candidate, &mut found);
            return found;
        }
        if candidate.exists() {
            return vec![candidate];
        }
    }
    Vec::new()
}

/// Files of a vars directory, sorted, recursing into extension-less subdirectories.
fn collect_dir(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = dir.join(&name);
        let ext = extension(&name);
        if path.is_dir() && ext.is_empty() {
            collect_dir(&path, found);
        } else if path.is_file() && (ext.is_empty() || VARS_EXTENSIONS.contains(&ext)) {
            found.push(path);
        }
    }
}

/// Python's `os.path.splitext(name)[1]`: the last `.suffix`, ignoring leading dots.
pub fn extension(name: &str) -> &str {
    let trimmed = name.trim_start_matches('.');
    match trimmed.rfind('.') {
        Some(i) => &trimmed[i..],
        None => "",
    }
}

/// Loads and merges (top-level replace) the vars for `name` found beside `basedir`.
pub fn load_vars(basedir: &Path, entity: Entity, name: &str) -> anyhow::Result<Map<String, Value>> {
    let mut vars = Map::new();
    for file in find_vars_files(basedir, entity, name) {
        let data = load_vars_file(&file)
            .with_context(|| format!("cannot load vars from {}", file.display()))?;
        for (k, v) in data {
            vars.insert(k, v);
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_or_directory_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let gv = dir.path().join("group_vars");
        std::fs::create_dir_all(gv.join("web")).unwrap();
        std::fs::write(gv.join("web/b.yml"), "x: 2\ny: b\n").unwrap();
        std::fs::write(gv.join("web/a.yml"), "x: 1\nz: a\n").unwrap();
        std::fs::write(gv.join("web/c.txt"), "x: 3\n").unwrap();
        std::fs::write(gv.join("db.yaml"), "d: 1\n").unwrap();
        let web = load_vars(dir.path(), Entity::Group, "web").unwrap();
        assert_eq!(
            serde_json::Value::Object(web),
            serde_json::json!({"x": 2, "z": "a", "y": "b"})
        );
        let db = load_vars(dir.path(), Entity::Group, "db").unwrap();
        assert_eq!(db["d"], 1);
        assert!(load_vars(dir.path(), Entity::Host, "h").unwrap().is_empty());
    }
}
