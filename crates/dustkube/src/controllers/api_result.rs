//! API errors inside controllers: [`ApiError`] results turned into `anyhow` errors that say the
//! reason and message, so a sync can use `?` and log why it failed.

use crate::api::status::ApiError;

/// `.or_fail()` on a `Result<T, ApiError>`.
pub trait OrFail<T> {
    /// The result with the error as `anyhow` ("Conflict: ...").
    fn or_fail(self) -> anyhow::Result<T>;
}

impl<T> OrFail<T> for Result<T, ApiError> {
    fn or_fail(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{}: {}", e.reason, e.message))
    }
}
