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
    /// PostgreSQL cannot be reached: no connection within the acquire timeout, a connection
    /// lost mid-request, or a server shutting down, starting up or out of connection slots.
    /// Retrying later may succeed; a write that got this error may or may not have committed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

/// SQLSTATEs of a server that is going away or not there yet: class 08 (connection exception),
/// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 53300
/// too_many_connections.
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => return StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_sqlstate(&c)) => {
                return StoreError::Unavailable(e.to_string())
            }
            _ => {}
        }
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
            // restrict_violation: a rule the schema enforces with a trigger (a session's
            // lifecycle, an append-only ledger), named by the constraint it raises with.
            if db.code().as_deref() == Some("23001") {
                return StoreError::Conflict { constraint };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_lost_connection_is_unavailable_not_a_database_error() {
        let lost = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection lost");
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(lost),
        ] {
            assert!(
                matches!(StoreError::from(e), StoreError::Unavailable(_)),
                "not Unavailable"
            );
        }
        assert!(unavailable_sqlstate("08006") && unavailable_sqlstate("57P01"));
        assert!(!unavailable_sqlstate("57014") && !unavailable_sqlstate("23505"));
    }
}
