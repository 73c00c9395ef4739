//! The module table: Ansible names and FQCN aliases → implementations, and "did you mean".

use super::{
    authorized_key, blockinfile, command, copy, file, firewalld, get_url, hostname, lineinfile,
    modprobe, mount, package, stat, sysctl, systemd, ufw, user, wait_for, Module,
};

/// Collection prefixes accepted in front of a module name.
const PREFIXES: &[&str] = &[
    "ansible.builtin.",
    "ansible.legacy.",
    "ansible.posix.",
    "community.general.",
    "community.crypto.",
];

/// Every module, by its short name.
fn table() -> &'static [(&'static str, &'static dyn Module)] {
    &[
        ("command", &command::Command),
        ("shell", &command::Shell),
        ("raw", &command::Raw),
        ("copy", &copy::Copy),
        ("template", &copy::Template),
        ("lineinfile", &lineinfile::LineInFile),
        ("blockinfile", &blockinfile::BlockInFile),
        ("file", &file::File),
        ("stat", &stat::Stat),
        ("slurp", &stat::Slurp),
        ("fetch", &stat::Fetch),
        ("sysctl", &sysctl::Sysctl),
        ("modprobe", &modprobe::Modprobe),
        ("systemd", &systemd::Systemd),
        ("systemd_service", &systemd::Systemd),
        ("service", &systemd::Service),
        ("package", &package::Package),
        ("apt", &package::Apt),
        ("dnf", &package::Dnf),
        ("yum", &package::Yum),
        ("firewalld", &firewalld::Firewalld),
        ("ufw", &ufw::Ufw),
        ("hostname", &hostname::Hostname),
        ("mount", &mount::Mount),
        ("user", &user::User),
        ("authorized_key", &authorized_key::AuthorizedKey),
        ("get_url", &get_url::GetUrl),
        ("wait_for", &wait_for::WaitFor),
    ]
}

/// Strips a collection prefix (`ansible.builtin.copy` → `copy`).
pub fn short_name(name: &str) -> &str {
    PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

/// The module called `name` (short or FQCN).
pub fn lookup(name: &str) -> Option<&'static dyn Module> {
    let short = short_name(name);
    table().iter().find(|(n, _)| *n == short).map(|(_, m)| *m)
}

/// All module names (short), for suggestions and task-keyword detection.
pub fn names() -> impl Iterator<Item = &'static str> {
    table().iter().map(|(n, _)| *n)
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
