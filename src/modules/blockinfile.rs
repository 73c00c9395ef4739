//! `blockinfile`: keep a marked block of lines in a file (inserted, replaced or removed), computed
//! locally by [`apply_block`] with Ansible's rules.

use anyhow::{bail, Result};
use async_trait::async_trait;
use regex::Regex;

use super::edit::{edit_file, Edit, EditOpts};
use super::{Args, Ctx, Module, Outcome};

/// `blockinfile`.
pub struct BlockInFile;

const PARAMS: &[&str] = &[
    "path",
    "dest",
    "destfile",
    "name",
    "state",
    "marker",
    "block",
    "content",
    "insertafter",
    "insertbefore",
    "create",
    "backup",
    "validate",
    "marker_begin",
    "marker_end",
    "append_newline",
    "prepend_newline",
    "mode",
    "owner",
    "group",
    "unsafe_writes",
    "attributes",
    "seuser",
    "serole",
    "setype",
    "selevel",
];

/// The parameters of one block edit.
#[derive(Debug, Clone)]
pub struct BlockSpec {
    /// `state: present`.
    pub present: bool,
    /// The block text.
    pub block: String,
    /// Marker template with `{mark}`.
    pub marker: String,
    /// Replaces `{mark}` in the first marker.
    pub marker_begin: String,
    /// Replaces `{mark}` in the last marker.
    pub marker_end: String,
    /// `insertafter` (`EOF` or regex).
    pub insertafter: Option<String>,
    /// `insertbefore` (`BOF` or regex).
    pub insertbefore: Option<String>,
    /// Blank line before the block.
    pub prepend_newline: bool,
    /// Blank line after the block.
    pub append_newline: bool,
}

impl Default for BlockSpec {
    fn default() -> Self {
        BlockSpec {
            present: true,
            block: String::new(),
            marker: "# {mark} ANSIBLE MANAGED BLOCK".into(),
            marker_begin: "BEGIN".into(),
            marker_end: "END".into(),
            insertafter: None,
            insertbefore: None,
            prepend_newline: false,
            append_newline: false,
        }
    }
}

/// New content for `original` (`None` = file missing): `(result, msg)`, msg empty when unchanged.
pub fn apply_block(original: Option<&str>, spec: &BlockSpec) -> Result<(String, String)> {
    let mut lines: Vec<String> = original
        .unwrap_or_default()
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect();
    let mut insertafter = spec.insertafter.as_deref();
    if insertafter.is_none() && spec.insertbefore.is_none() {
        insertafter = Some("EOF");
    }
    let insertre = match (insertafter, spec.insertbefore.as_deref()) {
        (Some(a), _) if a != "EOF" => Some(Regex::new(a)?),
        (None, Some(b)) if b != "BOF" => Some(Regex::new(b)?),
        _ => None,
    };
    let marker0 = format!("{}\n", spec.marker.replace("{mark}", &spec.marker_begin));
    let marker1 = format!("{}\n", spec.marker.replace("{mark}", &spec.marker_end));
    let blocklines: Vec<String> = if spec.present && !spec.block.is_empty() {
        let mut b = spec.block.clone();
        if !b.ends_with('\n') {
            b.push('\n');
        }
        std::iter::once(marker0.clone())
            .chain(b.split_inclusive('\n').map(str::to_owned))
            .chain(std::iter::once(marker1.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let (mut n0, mut n1) = (None, None);
    for (i, l) in lines.iter().enumerate() {
        if *l == marker0 {
            n0 = Some(i);
        }
        if *l == marker1 {
            n1 = Some(i);
        }
    }
    let mut at = match (n0, n1) {
        (Some(a), Some(b)) if a < b => {
            lines.drain(a..=b);
            a
        }
        (Some(a), Some(b)) => {
            lines.drain(b..=a);
            b
        }
        _ => match &insertre {
            Some(re) => {
                let last = lines
                    .iter()
                    .rposition(|l| re.is_match(l.strip_suffix('\n').unwrap_or(l)));
                match last {
                    None => lines.len(),
                    Some(i) if insertafter.is_some() => i + 1,
                    Some(i) => i,
                }
            }
            None if spec.insertbefore.is_some() => 0,
            None => lines.len(),
        },
    };
    if at > 0 && !lines[at - 1].ends_with('\n') {
        lines[at - 1].push('\n');
    }
    if spec.prepend_newline && spec.present && at != 0 && lines[at - 1] != "\n" {
        lines.insert(at, "\n".into());
        at += 1;
    }
    let count = blocklines.len();
    lines.splice(at..at, blocklines);
    if spec.append_newline && spec.present {
        let after = at + count;
        if after < lines.len() && lines[after] != "\n" {
            lines.insert(after, "\n".into());
        }
    }
    let result = lines.concat();
    let msg = if original == Some(result.as_str()) {
        ""
    } else if original.is_none() {
        "File created"
    } else if count == 0 {
        "Block removed"
    } else {
        "Block inserted"
    };
    Ok((result, msg.to_owned()))
}

#[async_trait]
impl Module for BlockInFile {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let path = args.required(&["path", "dest", "destfile", "name"])?;
        let d = BlockSpec::default();
        let spec = BlockSpec {
            present: args.choice("state", &["present", "absent"], "present")? == "present",
            block: args.str_any(&["block", "content"])?.unwrap_or_default(),
            marker: args.str("marker")?.unwrap_or(d.marker),
            marker_begin: args.str("marker_begin")?.unwrap_or(d.marker_begin),
            marker_end: args.str("marker_end")?.unwrap_or(d.marker_end),
            insertafter: args.str("insertafter")?,
            insertbefore: args.str("insertbefore")?,
            prepend_newline: args.bool("prepend_newline", false)?,
            append_newline: args.bool("append_newline", false)?,
        };
        if spec.insertafter.is_some() && spec.insertbefore.is_some() {
            bail!("parameters are mutually exclusive: insertbefore|insertafter");
        }
        let create = args.bool("create", false)?;
        let opts = EditOpts::from_args(args)?;
        let mut out = edit_file(ctx, &path, &opts, |text| match text {
            None if !create => Edit::Fail(format!("Path {path} does not exist !")),
            None if !spec.present => Edit::Keep(format!("File {path} not present")),
            text => match apply_block(text, &spec) {
                Err(e) => Edit::Fail(e.to_string()),
                Ok((_, msg)) if msg.is_empty() => Edit::Keep(msg),
                Ok((new, msg)) => Edit::Write(new, msg),
            },
        })
        .await?;
        if !out.failed {
            out.data.insert("path".into(), path.into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, LocalConn};
    use serde_json::json;

    fn spec(block: &str) -> BlockSpec {
        BlockSpec {
            block: block.into(),
            ..BlockSpec::default()
        }
    }

    #[test]
    fn inserts_at_eof_then_replaces_in_place() {
        let (r, m) = apply_block(Some("a\nb"), &spec("x\ny")).unwrap();
        assert_eq!(
            r,
            "a\nb\n# BEGIN ANSIBLE MANAGED BLOCK\nx\ny\n# END ANSIBLE MANAGED BLOCK\n"
        );
        assert_eq!(m, "Block inserted");
        let (r2, m2) = apply_block(Some(&r), &spec("x\ny")).unwrap();
        assert_eq!((r2.as_str(), m2.as_str()), (r.as_str(), ""));
        let (r3, _) = apply_block(Some(&format!("{r}tail\n")), &spec("z")).unwrap();
        assert_eq!(
            r3,
            "a\nb\n# BEGIN ANSIBLE MANAGED BLOCK\nz\n# END ANSIBLE MANAGED BLOCK\ntail\n"
        );
    }

    #[test]
    fn insertbefore_and_absent() {
        let s = BlockSpec {
            insertbefore: Some("^c".into()),
            marker: "// {mark} X".into(),
            ..spec("k")
        };
        let (r, _) = apply_block(Some("a\nc\nc\n"), &s).unwrap();
        assert_eq!(r, "a\nc\n// BEGIN X\nk\n// END X\nc\n");
        let s = BlockSpec {
            insertbefore: Some("BOF".into()),
            ..spec("k")
        };
        assert!(apply_block(Some("a\n"), &s)
            .unwrap()
            .0
            .starts_with("# BEGIN"));
        let absent = BlockSpec {
            present: false,
            ..spec("")
        };
        let (r, m) = apply_block(
            Some("a\n# BEGIN ANSIBLE MANAGED BLOCK\nk\n# END ANSIBLE MANAGED BLOCK\nb\n"),
            &absent,
        )
        .unwrap();
        assert_eq!((r.as_str(), m.as_str()), ("a\nb\n", "Block removed"));
        assert_eq!(apply_block(None, &spec("k")).unwrap().1, "File created");
    }

    #[tokio::test]
    async fn module_idempotent_and_check_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "keep\n").unwrap();
        let ps = p.to_str().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let a = json!({"path": ps, "block": "one\ntwo"});
        assert!(run(&BlockInFile, a.clone(), &ctx).await.changed);
        assert!(!run(&BlockInFile, a, &ctx).await.changed);
        let mut cenv = Env::new(dir.path());
        cenv.check = true;
        let before = std::fs::read_to_string(&p).unwrap();
        let o = run(
            &BlockInFile,
            json!({"path": ps, "state": "absent"}),
            &cenv.ctx(&LocalConn),
        )
        .await;
        assert!(o.changed);
        assert_eq!(o.diffs[0].after, "keep\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), before);
    }
}
