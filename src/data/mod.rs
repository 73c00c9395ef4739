//! Data shared by every loader: the value model (`serde_json::Value`, insertion-ordered) and
//! errors that point at a place in a source file.

pub mod error;
pub mod python;
pub mod yaml;

pub use error::{SourceError, SourcePos};
