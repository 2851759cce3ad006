//! The models crate's error: what was wrong (with the file and line where there is one), and
//! the underlying cause as its source.

/// An error of the models and formats: invalid input data, or a failed operation with its cause.
///
/// Display shows this error's own message; the cause (an I/O error, a number that did not
/// parse, an HDF5 or image-header error) is its [`std::error::Error::source`], so `anyhow`'s
/// `{:#}` prints the whole chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input that is malformed or out of range; the message names the file (and line).
    #[error("{0}")]
    Invalid(String),
    /// An operation that failed (`message` says which), with its cause.
    #[error("{message}")]
    Failed {
        /// What was being done, e.g. `reading data/list.txt`.
        message: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An error of the `wiberg` library.
    #[error(transparent)]
    Wiberg(#[from] wiberg::WibergError),
}

/// Result type of the models crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a message to a failure, keeping the failure as the source (as `anyhow::Context`).
pub trait Context<T> {
    /// Wraps the error (or `None`) with `message`.
    fn context<M: std::fmt::Display>(self, message: M) -> Result<T>;
    /// Wraps the error (or `None`) with the message `f` makes, made only on failure.
    fn with_context<M: std::fmt::Display, F: FnOnce() -> M>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>> Context<T> for std::result::Result<T, E> {
    fn context<M: std::fmt::Display>(self, message: M) -> Result<T> {
        self.map_err(|e| Error::Failed { message: message.to_string(), source: e.into() })
    }

    fn with_context<M: std::fmt::Display, F: FnOnce() -> M>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::Failed { message: f().to_string(), source: e.into() })
    }
}

impl<T> Context<T> for Option<T> {
    fn context<M: std::fmt::Display>(self, message: M) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(message.to_string()))
    }

    fn with_context<M: std::fmt::Display, F: FnOnce() -> M>(self, f: F) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(f().to_string()))
    }
}

/// Returns [`Error::Invalid`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}

/// Returns [`Error::Invalid`] with a formatted message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        // Bound first: `!(x < y)` must fail for NaN, as it does here.
        let holds: bool = $cond;
        if !holds {
            return Err($crate::error::Error::Invalid(format!($($arg)*)));
        }
    };
}

pub(crate) use {bail, ensure};
