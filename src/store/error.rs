//! The store's error type: backend-neutral, so callers never see sqlx.

/// What went wrong in the database layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or belongs to another org).
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; carries the constraint name.
    #[error("conflict on {0}")]
    Conflict(String),
    /// A row holds a value the code cannot interpret.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database could not be reached: refused or lost connection, a backend terminated
    /// by an administrator or a restart, no free connection in time. Passing; worth a retry.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// The database failed otherwise (or could not be set up).
    #[error("database error: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// True when the database could not be reached (worth retrying the same statement later),
    /// as opposed to one that refused a statement (retrying it unchanged will fail again).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().unwrap_or("unique").to_owned())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(err.to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unreachable(err.to_string()),
            // SQLSTATE class 08 (connection exception) and 57P0x (the server shut the
            // backend down: administrator command, crash, startup, idle timeout).
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
            {
                StoreError::Unreachable(err.to_string())
            }
            _ => StoreError::Unavailable(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Unavailable(format!("migration failed: {err}"))
    }
}
