//! Roles: where they are found, what a role directory holds, and how a play refers to one.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use super::load::Source;
use crate::data::yaml::load_vars_file;
use crate::modules::args::{to_bool, to_string};

/// The directories searched for roles, in order.
#[derive(Debug, Clone)]
pub struct RoleSearch {
    paths: Vec<PathBuf>,
}

impl RoleSearch {
    /// `<playbook dir>/roles`, the playbook dir, then `extra` (from `--roles-path`/`DUSTSTACK_ROLES_PATH`), then `./roles`.
    pub fn new(playbook_dir: &Path, extra: &[PathBuf]) -> Self {
        let mut paths = vec![playbook_dir.join("roles"), playbook_dir.to_path_buf()];
        paths.extend(extra.iter().cloned());
        if let Some(env) = std::env::var_os("DUSTSTACK_ROLES_PATH")
            .or_else(|| std::env::var_os("ANSIBLE_ROLES_PATH"))
        {
            paths.extend(std::env::split_paths(&env));
        }
        paths.push(PathBuf::from("roles"));
        RoleSearch { paths }
    }

    /// Finds and loads the role called `name` (or at path `name`).
    pub fn find(&self, name: &str) -> Result<Role> {
        let direct = PathBuf::from(name);
        let found = if name.contains('/') && direct.is_dir() {
            Some(direct)
        } else {
            self.paths.iter().map(|p| p.join(name)).find(|p| p.is_dir())
        };
        match found {
            Some(path) => Role::load(name, &path),
            None => bail!(
                "the role '{name}' was not found in {}",
                self.paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        }
    }
}

/// A role directory's content.
#[derive(Debug, Clone)]
pub struct Role {
    /// The role's name (last path component).
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// `defaults/main.yml`.
    pub defaults: Map<String, Value>,
    /// `vars/main.yml`.
    pub vars: Map<String, Value>,
    /// `meta/main.yml` dependencies.
    pub dependencies: Vec<RoleUse>,
}

impl Role {
    /// Loads the role at `path`.
    pub fn load(name: &str, path: &Path) -> Result<Role> {
        let vars_of = |dir: &str| -> Result<Map<String, Value>> {
            match main_file(&path.join(dir)) {
                Some(f) => load_vars_file(&f),
                None => Ok(Map::new()),
            }
        };
        let mut dependencies = Vec::new();
        if let Some(meta) = main_file(&path.join("meta")) {
            let src = Source::read(&meta)?;
            if let Some(Value::Array(deps)) = src.root.get("dependencies") {
                for (i, d) in deps.iter().enumerate() {
                    dependencies
                        .push(RoleUse::parse(d).map_err(|e| {
                            src.error(&format!("/dependencies/{i}"), e.to_string())
                        })?);
                }
            }
        }
        Ok(Role {
            name: Path::new(name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.to_owned()),
            path: path.to_path_buf(),
            defaults: vars_of("defaults").with_context(|| format!("role {name}: defaults"))?,
            vars: vars_of("vars").with_context(|| format!("role {name}: vars"))?,
            dependencies,
        })
    }

    /// The tasks file (`tasks/main.yml` or `tasks/<from>.yml`), if the role has one.
    pub fn tasks_file(&self, from: Option<&str>) -> Option<PathBuf> {
        let dir = self.path.join("tasks");
        match from {
            Some(f) => [
                dir.join(f),
                dir.join(format!("{f}.yml")),
                dir.join(format!("{f}.yaml")),
            ]
            .into_iter()
            .find(|p| p.is_file()),
            None => main_file(&dir),
        }
    }

    /// `handlers/main.yml`, if present.
    pub fn handlers_file(&self) -> Option<PathBuf> {
        main_file(&self.path.join("handlers"))
    }

    pub(crate) fn meta_source(&self) -> Result<Source> {
        let meta = main_file(&self.path.join("meta"))
            .ok_or_else(|| anyhow!("role {} has no meta/main.yml", self.name))?;
        Source::read(&meta)
    }
}

fn main_file(dir: &Path) -> Option<PathBuf> {
    ["main.yml", "main.yaml", "main"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// A reference to a role from a play, `meta` dependencies or `import_role`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleUse {
    /// Role name or path.
    pub name: String,
    /// Role parameters.
    pub params: Map<String, Value>,
    /// `tasks_from`.
    pub tasks_from: Option<String>,
    /// `when:` on the role.
    pub when: Vec<Value>,
    /// `tags:` on the role.
    pub tags: Vec<String>,
    /// `become:` on the role.
    pub escalate: Option<bool>,
}

impl RoleUse {
    /// Parses `- name` or `- role: name\n  param: v\n  when: ...`.
    pub fn parse(v: &Value) -> Result<RoleUse> {
        match v {
            Value::String(s) => Ok(RoleUse {
                name: s.clone(),
                ..RoleUse::default()
            }),
            Value::Object(m) => {
                let name = m
                    .get("role")
                    .or_else(|| m.get("name"))
                    .and_then(to_string)
                    .ok_or_else(|| anyhow!("a role entry needs 'role:'"))?;
                let mut used = RoleUse {
                    name,
                    ..RoleUse::default()
                };
                for (k, val) in m {
                    match k.as_str() {
                        "role" | "name" => {}
                        "tasks_from" => used.tasks_from = to_string(val),
                        "when" => match val {
                            Value::Array(items) => used.when.extend(items.iter().cloned()),
                            v => used.when.push(v.clone()),
                        },
                        "tags" => match val {
                            Value::Array(items) => {
                                used.tags.extend(items.iter().filter_map(to_string))
                            }
                            v => used.tags.extend(to_string(v)),
                        },
                        "become" => used.escalate = to_bool(val),
                        "vars" => {
                            if let Value::Object(vars) = val {
                                used.params.extend(vars.clone());
                            }
                        }
                        _ => {
                            used.params.insert(k.clone(), val.clone());
                        }
                    }
                }
                Ok(used)
            }
            _ => bail!("a role entry must be a name or a mapping"),
        }
    }
}
