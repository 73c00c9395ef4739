//! `lineinfile`: ensure one line is present (replacing the last regexp match, or inserted after /
//! before a marker) or absent, computed locally by [`present`] / [`absent`] with Ansible's rules.

use anyhow::{bail, Result};
use async_trait::async_trait;
use regex::Regex;

use super::edit::{edit_file, Edit, EditOpts};
use super::{Args, Ctx, Module, Outcome};

/// `lineinfile`.
pub struct LineInFile;

const PARAMS: &[&str] = &[
    "path",
    "dest",
    "destfile",
    "name",
    "regexp",
    "regex",
    "search_string",
    "line",
    "value",
    "state",
    "backrefs",
    "insertafter",
    "insertbefore",
    "create",
    "firstmatch",
    "backup",
    "mode",
    "owner",
    "group",
    "validate",
    "unsafe_writes",
    "others",
    "attributes",
    "seuser",
    "serole",
    "setype",
    "selevel",
];

/// The parameters of one edit.
#[derive(Debug, Default)]
pub struct Spec<'a> {
    /// `regexp`.
    pub regexp: Option<&'a Regex>,
    /// `search_string` (literal substring).
    pub search_string: Option<&'a str>,
    /// `line`.
    pub line: Option<&'a str>,
    /// `insertafter` (`EOF` or a regex).
    pub insertafter: Option<&'a str>,
    /// `insertbefore` (`BOF` or a regex).
    pub insertbefore: Option<&'a str>,
    /// `backrefs`.
    pub backrefs: bool,
    /// `firstmatch`.
    pub firstmatch: bool,
}

/// Splits text into lines keeping their `\n` (Python's `readlines`).
fn split_lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(str::to_owned).collect()
}

fn body(l: &str) -> &str {
    l.strip_suffix('\n').unwrap_or(l)
}

fn trim_eol(l: &str) -> &str {
    l.trim_end_matches(['\r', '\n'])
}

/// Converts a Python replacement template (`\1`, `\g<name>`) into the `regex` crate's syntax.
pub fn py_template(t: &str) -> String {
    let mut out = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().copied().filter(|d| d.is_ascii_digit()) {
                        n.push(d);
                        chars.next();
                        if n.len() == 2 {
                            break;
                        }
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// Ansible's `present()`: returns the new content and message when something changes, else `None`
/// (and the reason as message). `text` is `None` when the file does not exist (and `create` is set).
pub fn present(text: &str, spec: &Spec<'_>) -> Result<(Option<String>, String)> {
    let line = spec.line.unwrap_or_default();
    let mut lines = split_lines(text);
    let ins_re = match (spec.insertafter, spec.insertbefore) {
        (Some(a), _) if a != "BOF" && a != "EOF" => Some(Regex::new(a)?),
        (None, Some(b)) if b != "BOF" => Some(Regex::new(b)?),
        _ => None,
    };
    let mut index: [i64; 2] = [-1, -1];
    let mut matched: Option<usize> = None;
    if let Some(re) = spec.regexp {
        for (i, l) in lines.iter().enumerate() {
            if re.is_match(body(l)) {
                index[0] = i as i64;
                matched = Some(i);
                if spec.firstmatch {
                    break;
                }
            }
        }
    }
    if let Some(s) = spec.search_string {
        for (i, l) in lines.iter().enumerate() {
            if l.contains(s) {
                index[0] = i as i64;
                matched = Some(i);
                if spec.firstmatch {
                    break;
                }
            }
        }
    }
    if matched.is_none() {
        for (i, l) in lines.iter().enumerate() {
            if line == trim_eol(l) {
                index[0] = i as i64;
            } else if let Some(re) = &ins_re {
                if re.is_match(body(l)) {
                    if spec.insertafter.is_some() {
                        index[1] = i as i64 + 1;
                        if spec.firstmatch {
                            break;
                        }
                    }
                    if spec.insertbefore.is_some() {
                        index[1] = i as i64;
                        if spec.firstmatch {
                            break;
                        }
                    }
                }
            }
        }
    }
    let nl = |s: &str| format!("{s}\n");
    let added = "line added".to_owned();
    let mut msg = String::new();
    let mut changed = false;
    let after = spec.insertafter;
    let before = spec.insertbefore;
    if index[0] != -1 {
        let i0 = index[0] as usize;
        let mut new_line = match (spec.backrefs, matched, spec.regexp) {
            (true, Some(m), Some(re)) => {
                let mut dst = String::new();
                if let Some(caps) = re.captures(body(&lines[m])) {
                    caps.expand(&py_template(line), &mut dst);
                }
                dst
            }
            _ => line.to_owned(),
        };
        if !new_line.ends_with('\n') {
            new_line.push('\n');
        }
        // (index[0] is only set by a match or an exact line, so Ansible's insert branch here is dead.)
        if lines[i0] != new_line {
            lines[i0] = new_line;
            msg = "line replaced".into();
            changed = true;
        }
    } else if spec.backrefs {
        // Without a match the backreferences cannot be filled: do nothing.
    } else if before == Some("BOF") || after == Some("BOF") {
        lines.insert(0, nl(line));
        msg = added;
        changed = true;
    } else if after == Some("EOF") || index[1] == -1 {
        if lines.last().is_some_and(|l| !l.ends_with(['\n', '\r'])) {
            lines.push("\n".into());
        }
        lines.push(nl(line));
        msg = added;
        changed = true;
    } else if after.is_some() && index[1] != -1 {
        let i1 = index[1] as usize;
        if lines.len() == i1 {
            if trim_eol(&lines[i1 - 1]) != line {
                lines.push(nl(line));
                msg = added;
                changed = true;
            }
        } else if line != trim_eol(&lines[i1]) {
            lines.insert(i1, nl(line));
            msg = added;
            changed = true;
        }
    } else {
        let i1 = index[1] as usize;
        lines.insert(i1, nl(line));
        msg = added;
        changed = true;
    }
    Ok((changed.then(|| lines.concat()), msg))
}

/// Ansible's `absent()`: drops every line matching regexp / search_string / equal to line.
pub fn absent(text: &str, spec: &Spec<'_>) -> (Option<String>, String) {
    let mut found = 0;
    let kept: Vec<String> = split_lines(text)
        .into_iter()
        .filter(|l| {
            let m = if let Some(re) = spec.regexp {
                re.is_match(body(l))
            } else if let Some(s) = spec.search_string {
                l.contains(s)
            } else {
                spec.line.is_some_and(|line| line == trim_eol(l))
            };
            if m {
                found += 1;
            }
            !m
        })
        .collect();
    let msg = if found > 0 {
        format!("{found} line(s) removed")
    } else {
        String::new()
    };
    ((found > 0).then(|| kept.concat()), msg)
}

#[async_trait]
impl Module for LineInFile {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let path = args.required(&["path", "dest", "destfile", "name"])?;
        let state = args.choice("state", &["present", "absent"], "present")?;
        let regexp = args
            .str_any(&["regexp", "regex"])?
            .map(|r| Regex::new(&r))
            .transpose()?;
        let search_string = args.str("search_string")?;
        if regexp.is_some() && search_string.is_some() {
            bail!("parameters are mutually exclusive: regexp|search_string");
        }
        let line = args.str_any(&["line", "value"])?;
        let insertafter = args.str("insertafter")?;
        let insertbefore = args.str("insertbefore")?;
        if insertafter.is_some() && insertbefore.is_some() {
            bail!("parameters are mutually exclusive: insertafter|insertbefore");
        }
        let backrefs = args.bool("backrefs", false)?;
        let create = args.bool("create", false)?;
        let spec = Spec {
            regexp: regexp.as_ref(),
            search_string: search_string.as_deref(),
            line: line.as_deref(),
            insertafter: insertafter.as_deref(),
            insertbefore: insertbefore.as_deref(),
            backrefs,
            firstmatch: args.bool("firstmatch", false)?,
        };
        if state == "present" {
            if backrefs && regexp.is_none() {
                bail!("regexp is required with backrefs=true");
            }
            if line.is_none() {
                bail!("line is required with state=present");
            }
            if let Some(r) = insertafter
                .iter()
                .chain(insertbefore.iter())
                .find(|r| !["EOF", "BOF"].contains(&r.as_str()))
            {
                Regex::new(r)?;
            }
        } else if regexp.is_none() && search_string.is_none() && line.is_none() {
            bail!("one of line, search_string, or regexp is required with state=absent");
        }
        let opts = EditOpts::from_args(args)?;
        let mut out = edit_file(ctx, &path, &opts, |text| match (text, state.as_str()) {
            (None, "absent") => Edit::Keep("file not present".into()),
            (None, _) if !create => Edit::Fail(format!("Destination {path} does not exist !")),
            (None, _) if backrefs => Edit::Keep(String::new()),
            (text, "absent") => match absent(text.unwrap_or_default(), &spec) {
                (Some(new), msg) => Edit::Write(new, msg),
                (None, msg) => Edit::Keep(msg),
            },
            (text, _) => match present(text.unwrap_or_default(), &spec) {
                Ok((Some(new), msg)) => Edit::Write(new, msg),
                Ok((None, msg)) => Edit::Keep(msg),
                Err(e) => Edit::Fail(e.to_string()),
            },
        })
        .await?;
        if out.failed {
            return Ok(out);
        }
        out.data.insert("path".into(), path.into());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, run_err, Env, LocalConn};
    use serde_json::json;

    fn pres(text: &str, spec: Spec<'_>) -> (Option<String>, String) {
        present(text, &spec).unwrap()
    }

    #[test]
    fn replaces_last_match_unless_firstmatch() {
        let re = Regex::new("^a=").unwrap();
        let s = Spec {
            regexp: Some(&re),
            line: Some("a=9"),
            ..Spec::default()
        };
        assert_eq!(pres("a=1\nb\na=2\n", s).0.unwrap(), "a=1\nb\na=9\n");
        let s = Spec {
            regexp: Some(&re),
            line: Some("a=9"),
            firstmatch: true,
            ..Spec::default()
        };
        assert_eq!(pres("a=1\nb\na=2\n", s).0.unwrap(), "a=9\nb\na=2\n");
        let s = Spec {
            regexp: Some(&re),
            line: Some("a=2"),
            ..Spec::default()
        };
        assert_eq!(pres("a=1\nb\na=2\n", s), (None, String::new()));
    }

    #[test]
    fn appends_and_fixes_missing_newline() {
        let s = Spec {
            line: Some("x"),
            ..Spec::default()
        };
        assert_eq!(
            pres("a\nb", s),
            (Some("a\nb\nx\n".into()), "line added".into())
        );
        let s = Spec {
            line: Some("b"),
            ..Spec::default()
        };
        assert_eq!(pres("a\nb\n", s).0, None);
    }

    #[test]
    fn insertafter_and_insertbefore() {
        let s = Spec {
            line: Some("x"),
            insertafter: Some("^a"),
            ..Spec::default()
        };
        assert_eq!(pres("a\nb\na\nc\n", s).0.unwrap(), "a\nb\na\nx\nc\n");
        let s = Spec {
            line: Some("x"),
            insertafter: Some("^a"),
            firstmatch: true,
            ..Spec::default()
        };
        assert_eq!(pres("a\nb\na\nc\n", s).0.unwrap(), "a\nx\nb\na\nc\n");
        let s = Spec {
            line: Some("x"),
            insertbefore: Some("^c"),
            ..Spec::default()
        };
        assert_eq!(pres("a\nc\n", s).0.unwrap(), "a\nx\nc\n");
        let s = Spec {
            line: Some("x"),
            insertbefore: Some("BOF"),
            ..Spec::default()
        };
        assert_eq!(pres("a\n", s).0.unwrap(), "x\na\n");
        // no match for insertafter → EOF
        let s = Spec {
            line: Some("x"),
            insertafter: Some("^zz"),
            ..Spec::default()
        };
        assert_eq!(pres("a\n", s).0.unwrap(), "a\nx\n");
        // regexp matched: insertafter ignored, line replaced
        let re = Regex::new("^b").unwrap();
        let s = Spec {
            regexp: Some(&re),
            line: Some("B"),
            insertafter: Some("^a"),
            ..Spec::default()
        };
        assert_eq!(pres("a\nb\n", s).0.unwrap(), "a\nB\n");
        // insertafter matching a last line without newline glues the line on (checked with ansible-core 2.19)
        let s = Spec {
            line: Some("x"),
            insertafter: Some("^b"),
            ..Spec::default()
        };
        assert_eq!(pres("a\nb", s).0.unwrap(), "a\nbx\n");
        // existing exact line anywhere → no change even with insertafter
        let s = Spec {
            line: Some("x"),
            insertafter: Some("^a"),
            ..Spec::default()
        };
        assert_eq!(pres("x\na\n", s).0, None);
    }

    #[test]
    fn backrefs() {
        let re = Regex::new(r"^(\w+)=(\d+)$").unwrap();
        let s = Spec {
            regexp: Some(&re),
            line: Some(r"\1=\g<2>0 $x"),
            backrefs: true,
            ..Spec::default()
        };
        assert_eq!(pres("port=8\n", s).0.unwrap(), "port=80 $x\n");
        let s = Spec {
            regexp: Some(&re),
            line: Some(r"\1"),
            backrefs: true,
            ..Spec::default()
        };
        assert_eq!(pres("nothing here\n", s).0, None);
    }

    #[test]
    fn absent_counts() {
        let re = Regex::new("^#").unwrap();
        let s = Spec {
            regexp: Some(&re),
            ..Spec::default()
        };
        assert_eq!(
            absent("#a\nb\n#c\n", &s),
            (Some("b\n".into()), "2 line(s) removed".into())
        );
        let s = Spec {
            line: Some("b"),
            ..Spec::default()
        };
        assert_eq!(absent("a\n", &s), (None, String::new()));
    }

    #[tokio::test]
    async fn module_on_local_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/conf");
        let ps = p.to_str().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let e = run_err(&LineInFile, json!({"path": ps, "line": "a=1"}), &ctx).await;
        assert!(e.contains("does not exist"), "{e}");
        let a = json!({"path": ps, "line": "a=1", "regexp": "^a=", "create": true, "mode": "0600"});
        let o = run(&LineInFile, a.clone(), &ctx).await;
        assert!(o.changed);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a=1\n");
        assert!(!run(&LineInFile, a, &ctx).await.changed);
        let mut cenv = Env::new(dir.path());
        cenv.check = true;
        let cctx = cenv.ctx(&LocalConn);
        let o = run(
            &LineInFile,
            json!({"path": ps, "line": "a=2", "regexp": "^a="}),
            &cctx,
        )
        .await;
        assert!(o.changed);
        assert_eq!(o.msg.as_deref(), Some("line replaced"));
        assert_eq!(
            (o.diffs[0].before.as_str(), o.diffs[0].after.as_str()),
            ("a=1\n", "a=2\n")
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a=1\n");
        let o = run(
            &LineInFile,
            json!({"path": ps, "regexp": "^a=", "state": "absent"}),
            &ctx,
        )
        .await;
        assert!(o.changed);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }
}
