//! Facts about a host: one command gathers everything, a pure function parses its output.

pub mod setup;

pub use setup::{parse, COMMAND};
