//! Accounts: a unique user name and an argon2 password hash (never the password).

use super::{Columns, Db, with_db};

/// A stored account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
}

/// Creates an account. `None` when the name is taken.
pub async fn create(
    db: &Db,
    username: &str,
    password_hash: &str,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    with_db!(db, |p| {
        sqlx::query_scalar(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .fetch_optional(p)
        .await
    })
}

/// The account named `username`.
pub async fn find(db: &Db, username: &str) -> Result<Option<User>, sqlx::Error> {
    with_db!(db, |p| {
        let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(p)
            .await?;
        row.map(|r| {
            Ok(User {
                id: r.int("id")?,
                username: r.text("username")?,
                password_hash: r.text("password_hash")?,
            })
        })
        .transpose()
    })
}
