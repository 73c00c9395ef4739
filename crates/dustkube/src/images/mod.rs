//! The offline image bundle (`dustkube images build`): docker-archive tarballs (`manifest.json`
//! with RepoTags, the image config JSON, one uncompressed layer) made from a static busybox and
//! its applet links, importable with `ctr -n k8s.io images import`. Output is deterministic
//! (fixed owners and mtimes, sorted entries), so a re-run changes no file.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Every file in the images carries this mtime (2020-01-01T00:00:00Z).
const MTIME: u64 = 1_577_836_800;
/// The `created` time of every image config.
const CREATED: &str = "2020-01-01T00:00:00Z";
/// PATH inside the images.
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The pause entrypoint: sleeps forever, exits 0 on SIGTERM or SIGINT (it runs as PID 1).
const PAUSE_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// `dustkube images ...`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(Subcommand, Debug)]
enum ImagesCommand {
    /// Write the offline bundle: busybox:stable, busybox:musl, registry.k8s.io/pause:3.6.
    Build {
        /// Directory the tarballs go to (created if missing).
        #[arg(long)]
        output: PathBuf,
        /// The static busybox the images are made from.
        #[arg(long, default_value = "/usr/bin/busybox")]
        busybox: PathBuf,
    },
}

/// One image of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// File name of its tarball in the output directory.
    pub file: &'static str,
    /// The reference it is tagged with (RepoTags).
    pub reference: &'static str,
    /// Content of `/etc/busybox-flavor` (makes the busybox images differ).
    pub flavor: &'static str,
    /// Entrypoint (None: busybox's `sh` as Cmd).
    pub pause: bool,
}

/// The images of the bundle.
pub const BUNDLE: [ImageSpec; 3] = [
    ImageSpec {
        file: "busybox-stable.tar",
        reference: "docker.io/library/busybox:stable",
        flavor: "stable",
        pause: false,
    },
    ImageSpec {
        file: "busybox-musl.tar",
        reference: "docker.io/library/busybox:musl",
        flavor: "musl",
        pause: false,
    },
    ImageSpec {
        file: "pause-3.6.tar",
        reference: "registry.k8s.io/pause:3.6",
        flavor: "pause",
        pause: true,
    },
];

/// What [`build`] wrote for one image.
#[derive(Debug, Clone)]
pub struct Built {
    /// The tarball.
    pub path: PathBuf,
    /// Its reference.
    pub reference: String,
    /// The image ID (`sha256:` of the config JSON).
    pub id: String,
    /// False when an identical file was already there.
    pub changed: bool,
}

/// `dustkube images`.
pub fn run(args: &ImagesArgs) -> Result<()> {
    match &args.command {
        ImagesCommand::Build { output, busybox } => {
            for b in build(output, busybox)? {
                println!(
                    "{} {} {} ({})",
                    b.path.display(),
                    b.reference,
                    b.id,
                    if b.changed { "written" } else { "unchanged" }
                );
            }
            Ok(())
        }
    }
}

/// Writes every image of [`BUNDLE`] into `output`.
pub fn build(output: &Path, busybox: &Path) -> Result<Vec<Built>> {
    std::fs::create_dir_all(output)
        .with_context(|| format!("{}: cannot create", output.display()))?;
    let binary =
        std::fs::read(busybox).with_context(|| format!("{}: cannot read", busybox.display()))?;
    let applets = applets(busybox)?;
    let mut out = Vec::new();
    for spec in &BUNDLE {
        let (tarball, id) = archive(spec, &binary, &applets)?;
        let path = output.join(spec.file);
        let changed = std::fs::read(&path).ok().as_deref() != Some(&tarball[..]);
        if changed {
            let tmp = output.join(format!(".{}.tmp", spec.file));
            std::fs::write(&tmp, &tarball)
                .with_context(|| format!("{}: cannot write", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        out.push(Built {
            path,
            reference: spec.reference.into(),
            id,
            changed,
        });
    }
    Ok(out)
}

/// The applet paths (`bin/sh`, `usr/bin/wget`, ...) busybox was built with, sorted.
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("{}: cannot run", busybox.display()))?;
    if !out.status.success() {
        bail!("{} --list-full failed", busybox.display());
    }
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox" && !l.contains(".."))
        .collect();
    if list.is_empty() {
        bail!("{} lists no applets", busybox.display());
    }
    list.sort();
    list.dedup();
    Ok(list)
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tar header with fixed owner and mtime.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, Cursor::new(data))
        .with_context(|| format!("tar: {path}"))
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, format!("{path}/"), std::io::empty())
        .with_context(|| format!("tar: {path}"))
}

fn add_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path, target)
        .with_context(|| format!("tar: {path}"))
}

/// The root filesystem layer: directories, busybox, its applet links, /etc basics.
fn layer(spec: &ImageSpec, binary: &[u8], applets: &[String]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<&str> = vec![
        "bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "tmp", "usr", "usr/bin",
        "usr/sbin", "var", "var/www",
    ];
    dirs.sort_unstable();
    for d in dirs {
        let mode = if d == "tmp" { 0o1777 } else { 0o755 };
        add_dir(&mut b, d, mode)?;
    }
    add_file(&mut b, "bin/busybox", 0o755, binary)?;
    for a in applets {
        let first = a.split('/').next().unwrap_or("");
        if !["bin", "sbin", "usr"].contains(&first) {
            continue;
        }
        add_symlink(&mut b, a, "/bin/busybox")?;
    }
    add_file(
        &mut b,
        "etc/busybox-flavor",
        0o644,
        format!("{}\n", spec.flavor).as_bytes(),
    )?;
    add_file(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    add_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )?;
    b.into_inner().context("tar: finishing the layer")
}

/// The image config JSON (its sha256 is the image ID).
fn config(spec: &ImageSpec, diff_id: &str) -> Value {
    let (entrypoint, cmd) = if spec.pause {
        (json!(["/bin/sh", "-c", PAUSE_SCRIPT]), Value::Null)
    } else {
        (Value::Null, json!(["sh"]))
    };
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": [PATH_ENV],
            "Entrypoint": entrypoint,
            "Cmd": cmd,
            "WorkingDir": "/",
            "Labels": {"io.dustkube.flavor": spec.flavor},
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": format!("dustkube images build ({})", spec.flavor)}],
    })
}

/// One docker-archive tarball and the image ID.
fn archive(spec: &ImageSpec, binary: &[u8], applets: &[String]) -> Result<(Vec<u8>, String)> {
    let layer = layer(spec, binary, applets)?;
    let layer_hex = sha256_hex(&layer);
    let config = serde_json::to_vec(&config(spec, &format!("sha256:{layer_hex}")))?;
    let config_hex = sha256_hex(&config);
    let (repo, tag) = spec
        .reference
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{}: no tag", spec.reference))?;
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [spec.reference],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }]);
    let repositories = json!({ repo: { tag: layer_hex } });
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, &format!("{config_hex}.json"), 0o644, &config)?;
    add_dir(&mut b, &layer_hex, 0o755)?;
    add_file(&mut b, &format!("{layer_hex}/VERSION"), 0o644, b"1.0")?;
    add_file(&mut b, &format!("{layer_hex}/layer.tar"), 0o644, &layer)?;
    add_file(
        &mut b,
        "manifest.json",
        0o644,
        serde_json::to_string(&manifest)?.as_bytes(),
    )?;
    add_file(
        &mut b,
        "repositories",
        0o644,
        serde_json::to_string(&repositories)?.as_bytes(),
    )?;
    let tarball = b.into_inner().context("tar: finishing the archive")?;
    Ok((tarball, format!("sha256:{config_hex}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_applets() -> Vec<String> {
        vec![
            "bin/sh".into(),
            "usr/bin/wget".into(),
            "sbin/ifconfig".into(),
        ]
    }

    #[test]
    fn archives_are_deterministic_and_flavors_differ() {
        let bin = b"\x7fELF fake busybox".to_vec();
        let (a1, id1) = archive(&BUNDLE[0], &bin, &fake_applets()).unwrap();
        let (a2, id2) = archive(&BUNDLE[0], &bin, &fake_applets()).unwrap();
        assert_eq!(a1, a2);
        assert_eq!(id1, id2);
        let (_, musl) = archive(&BUNDLE[1], &bin, &fake_applets()).unwrap();
        assert_ne!(id1, musl);
    }

    #[test]
    fn archive_has_manifest_config_and_layer() {
        let bin = b"busybox".to_vec();
        let (tarball, id) = archive(&BUNDLE[2], &bin, &fake_applets()).unwrap();
        let mut ar = tar::Archive::new(Cursor::new(tarball));
        let mut files = std::collections::BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(p, data);
        }
        let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "registry.k8s.io/pause:3.6");
        let cfg_name = manifest[0]["Config"].as_str().unwrap();
        let cfg = &files[cfg_name];
        assert_eq!(format!("sha256:{}", sha256_hex(cfg)), id);
        let cfg: Value = serde_json::from_slice(cfg).unwrap();
        assert_eq!(cfg["config"]["Entrypoint"][0], "/bin/sh");
        let layer = &files[manifest[0]["Layers"][0].as_str().unwrap()];
        assert_eq!(
            cfg["rootfs"]["diff_ids"][0],
            format!("sha256:{}", sha256_hex(layer))
        );
        let mut l = tar::Archive::new(Cursor::new(layer.clone()));
        let names: Vec<String> = l
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"bin/busybox".to_string()));
        assert!(names.contains(&"usr/bin/wget".to_string()));
        assert!(names.contains(&"etc/busybox-flavor".to_string()));
    }
}
