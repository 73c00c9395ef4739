//! Errors that name `file:line:column` and quote the offending line.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based position in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourcePos {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub col: usize,
}

/// A parse or validation error located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The file the error is in.
    pub file: PathBuf,
    /// Where in the file.
    pub pos: SourcePos,
    /// What is wrong.
    pub message: String,
    /// The offending line, quoted under the message.
    pub line_text: Option<String>,
}

impl SourceError {
    /// An error at `pos` in `file`, quoting the line from `source` when given.
    pub fn new(
        file: impl AsRef<Path>,
        source: Option<&str>,
        pos: SourcePos,
        message: impl Into<String>,
    ) -> Self {
        let line_text =
            source.and_then(|s| s.lines().nth(pos.line.saturating_sub(1)).map(str::to_owned));
        SourceError {
            file: file.as_ref().to_path_buf(),
            pos,
            message: message.into(),
            line_text,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )?;
        if let Some(text) = &self.line_text {
            write!(
                f,
                "\n    {text}\n    {:>width$}",
                "^",
                width = self.pos.col.max(1)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for SourceError {}
