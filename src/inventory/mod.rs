//! The inventory model: hosts, groups, their vars, and loading from INI/YAML/JSON sources,
//! directories and host lists, with Ansible's reconciliation (`all`, `ungrouped`) and var merge.
//!
//! [`Inventory::load`] dispatches each source to [`ini`] or [`yaml`]; [`vars_dirs`] adds
//! `group_vars/`/`host_vars/`; [`pattern`] selects hosts; [`output`] prints like `ansible-inventory`.

pub mod ini;
pub mod literal;
pub mod output;
pub mod pattern;
pub mod range;
pub mod vars_dirs;
pub mod yaml;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indexmap::IndexMap;
use serde_json::{Map, Value};

use vars_dirs::Entity;

/// One host: its vars from inventory files and the groups it was put in directly.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Host name as written in the inventory (after range expansion).
    pub name: String,
    /// Vars set on the host in inventory files (incl. `ansible_port` from `host:port`).
    pub vars: Map<String, Value>,
    /// Groups the host was added to directly, in order.
    pub groups: Vec<String>,
}

/// One group: vars, direct hosts, child and parent groups.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Vars set on the group in inventory files.
    pub vars: Map<String, Value>,
    /// Hosts directly in this group, in insertion order.
    pub hosts: Vec<String>,
    /// Child groups, in insertion order.
    pub children: Vec<String>,
    /// Parent groups, in insertion order.
    pub parents: Vec<String>,
    /// `ansible_group_priority` (default 1).
    pub priority: i64,
}

/// A loaded inventory (one or more sources merged).
#[derive(Debug, Clone)]
pub struct Inventory {
    hosts: IndexMap<String, Host>,
    groups: IndexMap<String, Group>,
    /// Directories whose `group_vars/`/`host_vars/` apply (one per `-i` source).
    var_dirs: Vec<PathBuf>,
}

impl Default for Inventory {
    fn default() -> Self {
        Self::new()
    }
}

impl Inventory {
    /// An empty inventory holding only the groups `all` and `ungrouped`.
    pub fn new() -> Inventory {
        let mut inv = Inventory {
            hosts: IndexMap::new(),
            groups: IndexMap::new(),
            var_dirs: Vec::new(),
        };
        inv.add_group("all");
        inv.add_group("ungrouped");
        // `all` → `ungrouped` cannot form a loop.
        let _ = inv.add_child("all", "ungrouped");
        inv
    }

    /// Loads and merges inventory sources (files, directories, or `host1,host2,` lists).
    pub fn load(sources: &[PathBuf]) -> anyhow::Result<Inventory> {
        let mut inv = Inventory::new();
        for source in sources {
            inv.load_source(source)?;
        }
        inv.reconcile();
        Ok(inv)
    }

    fn load_source(&mut self, source: &Path) -> anyhow::Result<()> {
        let text = source.to_string_lossy();
        if !source.exists() {
            if text.contains(',') {
                return self.load_host_list(&text);
            }
            bail!("inventory source {} does not exist", source.display());
        }
        let basedir = if source.is_dir() {
            source.to_path_buf()
        } else {
            source.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        self.var_dirs.push(basedir);
        self.load_path(source)
    }

    /// `-i "a,b:2222,"`: every entry is an ungrouped host.
    fn load_host_list(&mut self, text: &str) -> anyhow::Result<()> {
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, port) = ini::split_host_port(entry);
            self.add_host(&name, None, port)?;
        }
        Ok(())
    }

    fn load_path(&mut self, path: &Path) -> anyhow::Result<()> {
        if path.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read inventory directory {}", path.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if ignored_in_dir(&name) {
                    continue;
                }
                self.load_path(&path.join(name))?;
            }
            return Ok(());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read inventory file {}", path.display()))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = vars_dirs::extension(&file_name);
        let yaml_ext = matches!(ext, ".yml" | ".yaml" | ".json");
        if yaml_ext || ext.is_empty() {
            match yaml::parse_source(&text, path) {
                Ok(Some(data)) => return yaml::populate(self, &data, path),
                Ok(None) => {}
                Err(err) if yaml_ext => return Err(err.into()),
                Err(_) => {}
            }
        }
        ini::parse(self, &text, path)
    }

    /// Adds a group if missing.
    pub fn add_group(&mut self, name: &str) {
        if !self.groups.contains_key(name) {
            self.groups.insert(
                name.to_owned(),
                Group {
                    name: name.to_owned(),
                    priority: 1,
                    ..Group::default()
                },
            );
        }
    }

    /// True when `name` is a known group.
    pub fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// Adds a host (and puts it in `group` when given); the port only counts on first sight.
    pub fn add_host(
        &mut self,
        name: &str,
        group: Option<&str>,
        port: Option<u16>,
    ) -> anyhow::Result<()> {
        if name.is_empty() {
            bail!("invalid empty host name");
        }
        if !self.hosts.contains_key(name) {
            let mut host = Host {
                name: name.to_owned(),
                ..Host::default()
            };
            if let Some(port) = port.filter(|p| *p != 0) {
                host.vars.insert("ansible_port".into(), Value::from(port));
            }
            self.hosts.insert(name.to_owned(), host);
        }
        if let Some(group) = group {
            let Some(g) = self.groups.get_mut(group) else {
                bail!("could not find group {group} in inventory");
            };
            if !g.hosts.iter().any(|h| h == name) {
                g.hosts.push(name.to_owned());
                if let Some(h) = self.hosts.get_mut(name) {
                    h.groups.push(group.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Sets a var on a group or host (`ansible_group_priority` sets the group's priority).
    pub fn set_variable(&mut self, entity: &str, key: &str, value: Value) -> anyhow::Result<()> {
        if let Some(group) = self.groups.get_mut(entity) {
            if key == "ansible_group_priority" {
                group.priority = priority_of(&value).with_context(|| {
                    format!("invalid ansible_group_priority {value} for group {entity}")
                })?;
            } else {
                group.vars.insert(key.to_owned(), value);
            }
        } else if let Some(host) = self.hosts.get_mut(entity) {
            host.vars.insert(key.to_owned(), value);
        } else {
            bail!("could not identify group or host named {entity}");
        }
        Ok(())
    }

    /// Makes `child` (a group, else a host) a member of group `parent`.
    pub fn add_child(&mut self, parent: &str, child: &str) -> anyhow::Result<()> {
        if !self.groups.contains_key(parent) {
            bail!("{parent} is not a known group");
        }
        if self.groups.contains_key(child) {
            if parent == child {
                bail!("can't add group {child} to itself");
            }
            if self.groups[parent].children.iter().any(|c| c == child) {
                return Ok(());
            }
            if self.ancestors(parent).contains(child) {
                bail!("adding group '{child}' as child to '{parent}' creates a recursive dependency loop");
            }
            if let Some(p) = self.groups.get_mut(parent) {
                p.children.push(child.to_owned());
            }
            if let Some(c) = self.groups.get_mut(child) {
                if !c.parents.iter().any(|p| p == parent) {
                    c.parents.push(parent.to_owned());
                }
            }
            Ok(())
        } else if self.hosts.contains_key(child) {
            self.add_host(child, Some(parent), None)
        } else {
            bail!("{child} is not a known host nor group")
        }
    }

    /// Every ancestor group of `group` (not including itself).
    fn ancestors(&self, group: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut todo: Vec<&str> = vec![group];
        while let Some(g) = todo.pop() {
            if let Some(g) = self.groups.get(g) {
                for p in &g.parents {
                    if seen.insert(p.clone()) {
                        todo.push(p);
                    }
                }
            }
        }
        seen
    }

    /// Ansible's `reconcile_inventory`: groups without parents go under `all`; hosts in no
    /// group other than `all` go to `ungrouped`, and leave it when they are in another group.
    pub fn reconcile(&mut self) {
        let orphans: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.name != "all" && g.parents.is_empty())
            .map(|g| g.name.clone())
            .collect();
        for g in orphans {
            let _ = self.add_child("all", &g);
        }
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        for name in names {
            let groups = self.host_groups(&name);
            let in_ungrouped = groups.iter().any(|g| g == "ungrouped");
            let others = groups.iter().any(|g| g != "all" && g != "ungrouped");
            if in_ungrouped && others {
                if let Some(u) = self.groups.get_mut("ungrouped") {
                    u.hosts.retain(|h| h != &name);
                }
                if let Some(h) = self.hosts.get_mut(&name) {
                    h.groups.retain(|g| g != "ungrouped");
                }
            } else if !in_ungrouped && !others {
                let _ = self.add_host(&name, Some("ungrouped"), None);
            }
        }
    }

    /// All groups a host belongs to, directly or through parents (incl. `all` when reachable).
    fn host_groups(&self, host: &str) -> Vec<String> {
        let Some(h) = self.hosts.get(host) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for g in &h.groups {
            let mut anc: Vec<String> = self.ancestors(g).into_iter().collect();
            anc.sort();
            for a in anc.into_iter().chain(std::iter::once(g.clone())) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Depth of a group: the longest parent chain up to `all` (which is 0).
    fn depth(&self, group: &str) -> usize {
        fn walk(inv: &Inventory, g: &str, guard: usize) -> usize {
            if guard > inv.groups.len() {
                return 0;
            }
            inv.groups
                .get(g)
                .map(|g| {
                    g.parents
                        .iter()
                        .map(|p| walk(inv, p, guard + 1) + 1)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        }
        walk(self, group, 0)
    }

    /// A host's groups (without `all`) sorted like Ansible's `sort_groups`: depth, priority, name.
    fn sorted_groups(&self, host: &str) -> Vec<String> {
        let mut groups: Vec<(usize, i64, String)> = self
            .host_groups(host)
            .into_iter()
            .filter(|g| g != "all")
            .map(|g| (self.depth(&g), self.groups[&g].priority, g))
            .collect();
        groups.sort();
        groups.into_iter().map(|(_, _, g)| g).collect()
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// All group names, in creation order.
    pub fn group_list(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// All hosts in the order they were first defined.
    pub fn hosts_in_order(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// All hosts, in inventory order (the order of `all`'s group tree, like Ansible).
    pub fn hosts(&self) -> Vec<String> {
        self.group_hosts("all")
    }

    /// Hosts of a group and its descendants, in Ansible's order.
    pub fn group_hosts(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut seen_groups: HashSet<String> = HashSet::new();
        // Breadth-first over descendants, like Group.get_hosts(preserve_ordering=True).
        let mut level: Vec<String> = vec![group.to_owned()];
        while !level.is_empty() {
            let mut next = Vec::new();
            for g in &level {
                if !seen_groups.insert(g.clone()) {
                    continue;
                }
                if let Some(grp) = self.groups.get(g) {
                    for h in &grp.hosts {
                        if seen.insert(h.clone()) {
                            out.push(h.clone());
                        }
                    }
                    next.extend(grp.children.iter().cloned());
                }
            }
            level = next;
        }
        out
    }

    /// Hosts matching an Ansible host pattern (`a:b`, `a:&b`, `a:!b`, `*`, `~re`, `g[0:2]`).
    pub fn select(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        pattern::select(self, pattern)
    }

    /// Sorted group names of a host, without `all` (Ansible's `group_names`).
    pub fn group_names(&self, host: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .host_groups(host)
            .into_iter()
            .filter(|g| g != "all")
            .collect();
        names.sort();
        names
    }

    /// The `groups` magic var: every group → its hosts (incl. descendants').
    pub fn groups(&self) -> IndexMap<String, Vec<String>> {
        self.groups
            .keys()
            .map(|g| (g.clone(), self.group_hosts(g)))
            .collect()
    }

    /// Vars of a group from inventory files plus `group_vars/` beside the sources.
    pub fn group_vars(&self, group: &str) -> anyhow::Result<Map<String, Value>> {
        let mut vars = self
            .groups
            .get(group)
            .map(|g| g.vars.clone())
            .unwrap_or_default();
        for dir in &self.var_dirs {
            merge(&mut vars, vars_dirs::load_vars(dir, Entity::Group, group)?);
        }
        Ok(vars)
    }

    /// A host's merged inventory-level vars, in Ansible's precedence order (playbook
    /// `group_vars/`/`host_vars/` from `playbook_dir` included when given).
    pub fn vars_for_host(
        &self,
        host: &str,
        playbook_dir: Option<&Path>,
    ) -> anyhow::Result<Map<String, Value>> {
        let Some(h) = self.hosts.get(host) else {
            bail!("host {host} is not in the inventory");
        };
        let groups = self.sorted_groups(host);
        let play_dirs: Vec<&Path> = playbook_dir.into_iter().collect();
        // Ansible's VARIABLE_PRECEDENCE: all_inventory, groups_inventory, all_plugins_inventory,
        // all_plugins_play, groups_plugins_inventory, groups_plugins_play.
        let mut vars = Map::new();
        merge(&mut vars, self.groups["all"].vars.clone());
        for g in &groups {
            merge(&mut vars, self.groups[g].vars.clone());
        }
        for dir in &self.var_dirs {
            merge(&mut vars, vars_dirs::load_vars(dir, Entity::Group, "all")?);
        }
        for dir in &play_dirs {
            merge(&mut vars, vars_dirs::load_vars(dir, Entity::Group, "all")?);
        }
        for dir in &self.var_dirs {
            for g in &groups {
                merge(&mut vars, vars_dirs::load_vars(dir, Entity::Group, g)?);
            }
        }
        for dir in &play_dirs {
            for g in &groups {
                merge(&mut vars, vars_dirs::load_vars(dir, Entity::Group, g)?);
            }
        }
        merge(&mut vars, h.vars.clone());
        for dir in self
            .var_dirs
            .iter()
            .map(PathBuf::as_path)
            .chain(play_dirs.iter().copied())
        {
            merge(&mut vars, vars_dirs::load_vars(dir, Entity::Host, host)?);
        }
        Ok(vars)
    }
}

/// Top-level replace merge (Ansible's default `hash_behaviour=replace`).
fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        into.insert(k, v);
    }
}

fn priority_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// Entries of a directory inventory Ansible skips (hidden, vars dirs, ignored extensions).
fn ignored_in_dir(name: &str) -> bool {
    const IGNORED_EXTS: [&str; 12] = [
        ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg",
        ".retry",
    ];
    name.starts_with('.')
        || matches!(name, "host_vars" | "group_vars" | "vars_plugins")
        || IGNORED_EXTS.iter().any(|e| name.ends_with(e))
}
