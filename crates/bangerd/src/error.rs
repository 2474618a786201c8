//! Errors inside the daemon are [`ApiError`]s: each already carries the code,
//! message and hint the client will see. These helpers turn host and store
//! failures into them without losing the cause chain.

use banger_api::ApiError;
use banger_store::StoreError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Converts any error into an `internal` [`ApiError`] whose message is
/// `what: cause: cause…`.
pub trait OrInternal<T> {
    fn or_internal(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<anyhow::Error>> OrInternal<T> for std::result::Result<T, E> {
    fn or_internal(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            let e: anyhow::Error = e.into();
            ApiError::internal(format!("{}: {e:#}", what()))
        })
    }
}

/// Maps store failures: duplicates become `conflict`, the rest `internal`.
pub fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::Duplicate { kind, ref name } => {
            let hint = match kind {
                "VM" => format!("pick another name, or remove the old VM with `banger vm delete {name}`"),
                "image" => {
                    format!("pick another name, or remove the old image with `banger image delete {name}`")
                }
                _ => format!("pick another name, or remove the old one with `banger kernel rm {name}`"),
            };
            ApiError::conflict(e.to_string()).with_hint(hint)
        }
        StoreError::IpTaken(_) => ApiError::conflict(e.to_string()),
        other => ApiError::internal(format!("{:#}", anyhow::Error::from(other))),
    }
}

/// Joins the errors of a multi-step cleanup into one message, so one failed
/// step neither hides nor stops the others.
pub fn join_errors(errors: Vec<String>) -> Option<String> {
    if errors.is_empty() {
        None
    } else {
        Some(errors.join("; "))
    }
}
