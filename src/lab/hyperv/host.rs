//! Running PowerShell on the Hyper-V host: locally (`powershell.exe`, on Windows) or over SSH
//! (`hyperv_host`, Windows OpenSSH whose default shell is cmd.exe).
//!
//! Every script travels as `-EncodedCommand <base64 of UTF-16LE>`, so cmd.exe, PowerShell and
//! `sh` (whichever is the remote default shell) see only `[A-Za-z0-9+/=]` and nothing needs
//! quoting. cmd.exe cuts command lines at 8191 characters, and the encoding makes a script
//! ~2.7 times longer, so a longer script is first uploaded (UTF-8 with BOM, which Windows
//! PowerShell 5.1 needs to read non-ASCII) into `vm_dir` by a short encoded `put` script that
//! copies its standard input to the file, then run with `-File "<path>"` (the path was
//! validated to contain nothing cmd.exe or PowerShell would expand). Uploads do not use the
//! connection's `put_file`: that one runs POSIX `cat`/`mv`, which cmd.exe does not have.
//!
//! A failing script prints one `duststack-error {"command":…,"message":…}` line on stderr (its
//! `trap`); a script that fails before the trap is set (a parse error) makes PowerShell print its
//! error as CLIXML, which is decoded here. Both become [`HyperVError::Failed`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::options::HyperVOptions;
use super::{render_put, ERROR_PREFIX};
use crate::connection::{connect, ConnError, Connection, ExecOutput};

/// The longest command line sent to the host: cmd.exe's limit is 8191 characters.
pub const MAX_COMMAND_LINE: usize = 8000;

/// The options every invocation starts with.
const BASE_ARGS: [&str; 5] = [
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
];

/// Why a Hyper-V operation failed; every message names the host.
#[derive(Debug, thiserror::Error)]
pub enum HyperVError {
    /// A script stopped with an error (`command` is the failing cmdlet, or the script kind).
    #[error("Hyper-V host {host}: {command} failed: {message}")]
    Failed {
        /// Host label.
        host: String,
        /// The cmdlet that failed (`New-VM`), else the script (`lab up`).
        command: String,
        /// PowerShell's message.
        message: String,
    },
    /// The SSH connection failed.
    #[error("Hyper-V host {host}: {source}")]
    Transport {
        /// Host label.
        host: String,
        /// The connection error.
        #[source]
        source: ConnError,
    },
    /// PowerShell could not be started locally.
    #[error("Hyper-V host {host}: cannot run {program}: {source}")]
    Spawn {
        /// Host label.
        host: String,
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A script succeeded but its JSON result line is missing or malformed.
    #[error("Hyper-V host {host}: unexpected reply to the {kind} script: {detail}")]
    BadReply {
        /// Host label.
        host: String,
        /// Script kind (`up`, `status`, ...).
        kind: String,
        /// What was wrong, with the output.
        detail: String,
    },
    /// Not every VM reported its address in time.
    #[error("Hyper-V host {host}: timed out after {}s waiting for addresses of {} ({detail})", waited.as_secs(), missing.join(", "))]
    Timeout {
        /// Host label.
        host: String,
        /// How long `up` waited.
        waited: Duration,
        /// VMs without their expected address.
        missing: Vec<String>,
        /// What the last poll saw for them.
        detail: String,
    },
    /// `down` ran but the final listing still shows things duststack created.
    #[error("Hyper-V host {host}: lab down left {}", remaining.join(", "))]
    Remains {
        /// Host label.
        host: String,
        /// What is left (`vm X`, `switch Y`, `file Z`).
        remaining: Vec<String>,
    },
    /// Bad setup on the control machine (no host to run on, seed missing, ...).
    #[error("{0}")]
    Setup(String),
}

/// How scripts reach PowerShell.
enum Transport {
    /// A local program (`powershell.exe`), started without a shell.
    Local { program: PathBuf },
    /// A command line run by the SSH server's default shell.
    Ssh {
        conn: Arc<dyn Connection>,
        program: String,
    },
}

/// A host that runs PowerShell scripts for the Hyper-V provider.
pub struct HyperVHost {
    label: String,
    transport: Transport,
    max_command_line: usize,
}

/// The result of `put`: what the host wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// Path on the host.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of the written file (upper-case hex, as `Get-FileHash` prints it).
    pub sha256: String,
}

impl HyperVHost {
    /// `powershell.exe` on this machine (Hyper-V on the local Windows).
    pub fn local() -> HyperVHost {
        HyperVHost::local_program("powershell.exe")
    }

    /// Another local PowerShell program (e.g. `pwsh`, or a stand-in in tests).
    pub fn local_program(program: impl Into<PathBuf>) -> HyperVHost {
        HyperVHost {
            label: "localhost".into(),
            transport: Transport::Local {
                program: program.into(),
            },
            max_command_line: MAX_COMMAND_LINE,
        }
    }

    /// A Windows host reached through an open connection; runs `powershell` there.
    pub fn over_ssh(conn: Arc<dyn Connection>, label: impl Into<String>) -> HyperVHost {
        HyperVHost {
            label: label.into(),
            transport: Transport::Ssh {
                conn,
                program: "powershell".into(),
            },
            max_command_line: MAX_COMMAND_LINE,
        }
    }

    /// The host `opts` names: SSH to `hyperv_host`, else local PowerShell on Windows; on
    /// another OS without `hyperv_host` this is an error.
    pub async fn connect(opts: &HyperVOptions) -> Result<HyperVHost, HyperVError> {
        match &opts.ssh {
            Some(spec) => {
                let label = spec.label();
                let conn = connect(spec)
                    .await
                    .map_err(|source| HyperVError::Transport {
                        host: label.clone(),
                        source,
                    })?;
                Ok(HyperVHost::over_ssh(conn, label))
            }
            None if cfg!(windows) => Ok(HyperVHost::local()),
            None => Err(HyperVError::Setup(
                "Hyper-V runs on Windows only: set hyperv_host to a Windows machine with Hyper-V and the OpenSSH server (user: hyperv_user, default Administrator)".into(),
            )),
        }
    }

    /// Lowers the command-line limit above which scripts are uploaded first.
    pub fn with_max_command_line(mut self, chars: usize) -> HyperVHost {
        self.max_command_line = chars;
        self
    }

    /// The host's name in messages (`user@host:port`, or `localhost`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Closes the SSH connection (nothing to do locally).
    pub async fn close(&self) {
        if let Transport::Ssh { conn, .. } = &self.transport {
            conn.close().await;
        }
    }

    /// Runs `script` of `kind` (`up`, `status`, `down`, `files`) and returns its JSON result
    /// object. A script too long for one command line is uploaded to `upload_to` first.
    pub async fn run_script(
        &self,
        kind: &str,
        script: &str,
        upload_to: &str,
    ) -> Result<Value, HyperVError> {
        let encoded = encode_command(script);
        let out = if self.command_line_len(&encoded) <= self.max_command_line {
            self.exec(Invocation::Encoded(&encoded), None).await?
        } else {
            let mut data = vec![0xEF, 0xBB, 0xBF];
            data.extend_from_slice(script.as_bytes());
            self.put(upload_to, &data).await?;
            self.exec(Invocation::File(upload_to), None).await?
        };
        self.result(kind, &out)
    }

    /// Writes `data` to `path` on the host (through the `put` script's standard input) and
    /// checks the SHA-256 the host reports.
    pub async fn put(&self, path: &str, data: &[u8]) -> Result<PutResult, HyperVError> {
        let encoded = encode_command(&render_put(path));
        if self.command_line_len(&encoded) > self.max_command_line {
            return Err(HyperVError::Setup(format!(
                "cannot upload to {path}: the path is too long for one command line"
            )));
        }
        let out = self.exec(Invocation::Encoded(&encoded), Some(data)).await?;
        let v = self.result("put", &out)?;
        let got = PutResult {
            path: v["path"].as_str().unwrap_or(path).to_string(),
            bytes: v["bytes"].as_u64().unwrap_or(0),
            sha256: v["sha256"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_uppercase(),
        };
        let want = sha256_hex(data);
        if got.sha256 != want || got.bytes != data.len() as u64 {
            return Err(HyperVError::BadReply {
                host: self.label.clone(),
                kind: "put".into(),
                detail: format!(
                    "{path}: wrote {} bytes with SHA-256 {}, expected {} bytes with {want}",
                    got.bytes,
                    got.sha256,
                    data.len()
                ),
            });
        }
        Ok(got)
    }

    /// Length of the command line that would carry `encoded`.
    fn command_line_len(&self, encoded: &str) -> usize {
        let program = match &self.transport {
            Transport::Local { program } => program.as_os_str().len(),
            Transport::Ssh { program, .. } => program.len(),
        };
        program + BASE_ARGS.iter().map(|a| a.len() + 1).sum::<usize>() + 1 + encoded.len()
    }

    /// Starts PowerShell once.
    async fn exec(
        &self,
        how: Invocation<'_>,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, HyperVError> {
        let mut args: Vec<String> = BASE_ARGS[..4].iter().map(|a| a.to_string()).collect();
        match &self.transport {
            Transport::Local { program } => {
                match how {
                    Invocation::Encoded(b64) => args.extend(["-EncodedCommand".into(), b64.into()]),
                    Invocation::File(path) => args.extend(["-File".into(), path.into()]),
                }
                run_local(program, &args, stdin)
                    .await
                    .map_err(|source| HyperVError::Spawn {
                        host: self.label.clone(),
                        program: program.display().to_string(),
                        source,
                    })
            }
            Transport::Ssh { conn, program } => {
                match how {
                    Invocation::Encoded(b64) => args.extend(["-EncodedCommand".into(), b64.into()]),
                    Invocation::File(path) => args.extend(["-File".into(), format!("\"{path}\"")]),
                }
                let line = format!("{program} {}", args.join(" "));
                conn.exec(&line, stdin)
                    .await
                    .map_err(|source| HyperVError::Transport {
                        host: self.label.clone(),
                        source,
                    })
            }
        }
    }

    /// The JSON result of a finished script, or the error it reported.
    fn result(&self, kind: &str, out: &ExecOutput) -> Result<Value, HyperVError> {
        let stdout = out.stdout_str();
        let stderr = out.stderr_str();
        if out.rc != 0 {
            let (command, message) = script_error(&stderr, &stdout)
                .unwrap_or_else(|| (String::new(), format!("exit code {}", out.rc)));
            return Err(HyperVError::Failed {
                host: self.label.clone(),
                command: if command.is_empty() {
                    script_title(kind)
                } else {
                    command
                },
                message,
            });
        }
        result_json(&stdout, kind).ok_or_else(|| HyperVError::BadReply {
            host: self.label.clone(),
            kind: kind.into(),
            detail: format!(
                "no JSON result line; stdout: {:?}; stderr: {:?}",
                tail(&stdout),
                tail(&stderr)
            ),
        })
    }
}

/// How a script is handed over.
enum Invocation<'a> {
    /// `-EncodedCommand <base64>`.
    Encoded(&'a str),
    /// `-File <path>` (already on the host).
    File(&'a str),
}

/// What a script kind is called in messages (`lab up`, `upload`, ...).
fn script_title(kind: &str) -> String {
    match kind {
        "put" => "upload".into(),
        "files" => "file check".into(),
        other => format!("lab {other}"),
    }
}

/// Starts `program` with `args` (no shell), feeds `stdin`, collects the output.
async fn run_local(
    program: &std::path::Path,
    args: &[String],
    stdin: Option<&[u8]>,
) -> std::io::Result<ExecOutput> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        if let Some(data) = stdin {
            // The script may exit without reading everything; its exit code tells.
            let _ = input.write_all(data).await;
        }
        drop(input);
    }
    let out = child.wait_with_output().await?;
    Ok(ExecOutput {
        rc: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// `-EncodedCommand`'s argument: base64 of the script in UTF-16LE.
pub fn encode_command(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Upper-case hex SHA-256, as `Get-FileHash` prints it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The last stdout line that is a JSON object with `"duststack": kind`.
pub fn result_json(stdout: &str, kind: &str) -> Option<Value> {
    stdout.lines().rev().find_map(|line| {
        let v: Value = serde_json::from_str(line.trim().trim_start_matches('\u{feff}')).ok()?;
        (v.get("duststack")?.as_str()? == kind).then_some(v)
    })
}

/// The failing command and message of a script: its trap's `duststack-error` line, else
/// PowerShell's CLIXML error records, else the plain stderr (or stdout) text.
pub fn script_error(stderr: &str, stdout: &str) -> Option<(String, String)> {
    for line in stderr.lines() {
        if let Some(json) = line.trim_start().strip_prefix(ERROR_PREFIX) {
            if let Ok(v) = serde_json::from_str::<Value>(json) {
                let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").trim();
                return Some((field("command").to_string(), field("message").to_string()));
            }
        }
    }
    if let Some(text) = clixml_errors(stderr) {
        return Some((String::new(), text));
    }
    let plain = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let plain = tail(plain);
    (!plain.is_empty()).then(|| (String::new(), plain))
}

/// The text of the error records in PowerShell's CLIXML stderr (`#< CLIXML` followed by
/// `<Objs>` with `<S S="Error">` strings; `_x000D__x000A_` encodes characters XML cannot carry).
pub fn clixml_errors(stderr: &str) -> Option<String> {
    let start = stderr.find("#< CLIXML")?;
    let re = regex::Regex::new(r#"(?s)<S S="Error">(.*?)</S>"#).ok()?;
    let text: String = re
        .captures_iter(&stderr[start..])
        .map(|c| clixml_unescape(&c[1]))
        .collect();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Undoes XML entities and PowerShell's `_xHHHH_` escapes (UTF-16 code units).
fn clixml_unescape(s: &str) -> String {
    let s = s
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let mut units: Vec<u16> = Vec::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(pos) = rest.find("_x") {
        let candidate = rest.get(pos + 2..pos + 7);
        match candidate
            .filter(|c| c.ends_with('_') && c[..4].chars().all(|h| h.is_ascii_hexdigit()))
        {
            Some(c) => {
                units.extend(rest[..pos].encode_utf16());
                units.push(u16::from_str_radix(&c[..4], 16).unwrap_or(0xFFFD));
                rest = &rest[pos + 7..];
            }
            None => {
                units.extend(rest[..pos + 2].encode_utf16());
                rest = &rest[pos + 2..];
            }
        }
    }
    units.extend(rest.encode_utf16());
    String::from_utf16_lossy(&units)
}

/// The last 2000 characters of `s`, trimmed.
fn tail(s: &str) -> String {
    let s = s.trim();
    let start = s
        .char_indices()
        .rev()
        .nth(1999)
        .map(|(i, _)| i)
        .unwrap_or(0);
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_hyperv_encoded_command_is_utf16le_base64() {
        // `dir` → d\0i\0r\0 → "ZABpAHIA" (what PowerShell's own example produces).
        assert_eq!(encode_command("dir"), "ZABpAHIA");
        let b = base64::engine::general_purpose::STANDARD
            .decode(encode_command("é€"))
            .unwrap();
        assert_eq!(b, [0xE9, 0x00, 0xAC, 0x20]);
    }

    #[test]
    fn lab_hyperv_errors_from_trap_clixml_and_plain_stderr() {
        let trap = "noise\nduststack-error {\"command\":\"New-VM\",\"message\":\"The operation failed.\\nNot enough memory.\"}\n";
        assert_eq!(
            script_error(trap, ""),
            Some((
                "New-VM".into(),
                "The operation failed.\nNot enough memory.".into()
            ))
        );
        let clixml = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">At line:3 char:1_x000D__x000A_</S><S S=\"Error\">+ New-VM -Name &apos;a&apos; &lt;x&gt;_x000D__x000A_</S><S S=\"Error\">Missing closing '}' in statement block._x000D__x000A_</S></Objs>";
        let (cmd, msg) = script_error(clixml, "").unwrap();
        assert_eq!(cmd, "");
        assert_eq!(
            msg,
            "At line:3 char:1\n+ New-VM -Name 'a' <x>\nMissing closing '}' in statement block."
        );
        assert_eq!(
            script_error("powershell: not found\n", ""),
            Some((String::new(), "powershell: not found".into()))
        );
        assert_eq!(script_error("", ""), None);
        assert_eq!(clixml_unescape("a_x_b_x0041_"), "a_x_bA");
    }

    #[test]
    fn lab_hyperv_result_line_is_the_last_matching_json() {
        let out = "Name State\n---- -----\n{\"duststack\":\"status\",\"vms\":[]}\n{\"other\":1}\n";
        assert_eq!(
            result_json(out, "status").unwrap()["vms"],
            serde_json::json!([])
        );
        assert!(result_json(out, "up").is_none());
    }
}
