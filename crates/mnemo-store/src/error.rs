use sqlx::error::ErrorKind;

/// The `constraint` of a [`StoreError::Conflict`] raised when a concurrent request wrote the same
/// rows (deadlock, serialization failure, an id created and replaced under our feet).
pub const CONCURRENT_WRITE: &str = "concurrent_write";

/// Store failures, free of HTTP. The server maps each to a status once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique constraint refused the write; `constraint` names it.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// A check, not-null or type constraint refused a value.
    #[error("invalid value: {message}")]
    Invalid { message: String },
    /// A foreign key refused the write (the referenced row is gone or never existed).
    #[error("reference not found: {constraint}")]
    MissingReference { constraint: String },
    /// The tenant's quota would be exceeded.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// A statement ran longer than the transaction's `statement_timeout` and was cancelled
    /// (SQLSTATE 57014, query_canceled).
    #[error("statement cancelled: {0}")]
    Cancelled(String),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            match db.kind() {
                ErrorKind::UniqueViolation => return StoreError::Conflict { constraint },
                ErrorKind::ForeignKeyViolation => {
                    return StoreError::MissingReference { constraint }
                }
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                    return StoreError::Invalid {
                        message: db.message().to_owned(),
                    }
                }
                _ => {}
            }
            if db.code().as_deref() == Some("57014") {
                return StoreError::Cancelled(db.message().to_owned());
            }
            // A deadlock or serialization failure: two requests wrote the same rows at once and
            // PostgreSQL aborted this one. Nothing of it remains; a retry succeeds or conflicts.
            if matches!(db.code().as_deref(), Some("40P01" | "40001")) {
                return StoreError::Conflict {
                    constraint: CONCURRENT_WRITE.into(),
                };
            }
            // Data exceptions (class 22): bad casts, out-of-range numbers, malformed vectors.
            if db.code().is_some_and(|c| c.starts_with("22")) {
                return StoreError::Invalid {
                    message: db.message().to_owned(),
                };
            }
        }
        StoreError::Database(e)
    }
}
