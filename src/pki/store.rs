//! The PKI directory on disk: `<name>.crt` / `<name>.key` files, `sa.key` / `sa.pub`, atomic writes
//! (temp file + rename), keys 0600, certificates and public keys 0644.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::PkiError;

/// Mode of private keys and kubeconfigs (they embed keys).
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and public keys.
pub const CERT_MODE: u32 = 0o644;

/// One PKI directory (kubeadm's `/etc/kubernetes/pki`).
#[derive(Debug, Clone)]
pub struct Store {
    /// The directory.
    pub dir: PathBuf,
}

impl Store {
    /// A store rooted at `dir` (nothing is touched yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `<dir>/<name>.crt`.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// `<dir>/<name>.key`.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// Reads `<name>.crt`; `None` when it does not exist.
    pub fn read_cert(&self, name: &str) -> Result<Option<String>, PkiError> {
        read_optional(&self.cert_path(name))
    }

    /// Reads `<name>.key`; `None` when it does not exist.
    pub fn read_key(&self, name: &str) -> Result<Option<String>, PkiError> {
        read_optional(&self.key_path(name))
    }

    /// Writes `<name>.crt` (0644) atomically.
    pub fn write_cert(&self, name: &str, pem: &str) -> Result<(), PkiError> {
        write_atomic(&self.cert_path(name), pem.as_bytes(), CERT_MODE)
    }

    /// Writes `<name>.key` (0600) atomically.
    pub fn write_key(&self, name: &str, pem: &str) -> Result<(), PkiError> {
        write_atomic(&self.key_path(name), pem.as_bytes(), KEY_MODE)
    }

    /// Checks that the directory can be created or read (so errors name it before any work).
    pub fn ensure_dir(&self) -> Result<(), PkiError> {
        ensure_dir(&self.dir)
    }
}

/// Creates `dir` (and parents) if missing and checks it is a readable directory.
pub fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    fs::read_dir(dir).map_err(io)?;
    Ok(())
}

/// Reads a text file; `Ok(None)` when it does not exist, an error for anything else.
pub fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `bytes` to `path` with `mode`: a temp file in the same directory, fsync, rename.
/// Readers never see a half-written file; parent directories are created.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PkiError::Io { path: p, source }
    };
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io(parent))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given at creation is reduced by the umask; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}
