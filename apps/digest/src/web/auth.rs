//! Accounts and who is signed in: argon2id password hashes (computed off the async threads,
//! through the [`Hashing`] gate), the signed-in user in the session, and the session id
//! cycled on sign-in.

use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use shoal_kit::Session;

use super::csrf;
use super::error::AppError;
use super::hashing::Hashing;
use crate::db::{self, Db};

const USER_ID: &str = "user_id";
const USERNAME: &str = "username";

/// The user a request belongs to.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SignedIn {
    pub(crate) id: i64,
    pub(crate) username: String,
}

/// The signed-in user of `session`, if any.
pub(crate) fn current(session: &Session) -> Result<Option<SignedIn>, AppError> {
    let id = session.get::<i64>(USER_ID)?;
    let username = session.get::<String>(USERNAME)?;
    Ok(id
        .zip(username)
        .map(|(id, username)| SignedIn { id, username }))
}

/// The signed-in user, or 401.
pub(crate) fn required(session: &Session) -> Result<SignedIn, AppError> {
    current(session)?.ok_or(AppError::Unauthorized("sign in first"))
}

/// Makes `user` the session's user, under a new session id and a new form token (so an id or
/// token planted before sign-in is worthless after it).
pub(crate) fn start(session: &Session, user: &SignedIn) -> Result<(), AppError> {
    session.cycle();
    session.insert(USER_ID, user.id)?;
    session.insert(USERNAME, &user.username)?;
    csrf::renew(session)?;
    Ok(())
}

/// Signs out: the session is deleted on the server and the cookie cleared.
pub(crate) fn end(session: &Session) {
    session.delete();
}

/// A user name, trimmed and lowercased, or why it is not acceptable.
pub(crate) fn normalize_username(raw: &str) -> Result<String, AppError> {
    let name = raw.trim().to_ascii_lowercase();
    let ok = (3..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(name)
    } else {
        Err(AppError::BadRequest(
            "a user name has 3 to 40 characters: letters, digits, `_`, `.` or `-`".to_owned(),
        ))
    }
}

fn check_password(password: &str) -> Result<(), AppError> {
    if (8..=1024).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "a password has 8 to 1024 characters".to_owned(),
        ))
    }
}

/// Creates an account and returns its user (not yet signed in).
pub(crate) async fn sign_up(
    db: &Db,
    hashing: &Arc<Hashing>,
    username: &str,
    password: &str,
) -> Result<SignedIn, AppError> {
    let username = normalize_username(username)?;
    check_password(password)?;
    let password = password.to_owned();
    let hash = hashing
        .run(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| AppError::internal("password hashing", &e))?;
    match db::users::create(db, &username, &hash, db::now_ms()).await? {
        Some(id) => Ok(SignedIn { id, username }),
        None => Err(AppError::Conflict(format!(
            "the user name `{username}` is taken"
        ))),
    }
}

/// Checks a user name and password. Unknown names cost as much time as wrong passwords, so
/// timing does not tell which names exist.
pub(crate) async fn sign_in(
    db: &Db,
    hashing: &Arc<Hashing>,
    username: &str,
    password: &str,
) -> Result<SignedIn, AppError> {
    let wrong = AppError::Unauthorized("wrong user name or password");
    let Ok(name) = normalize_username(username) else {
        return Err(wrong);
    };
    let user = db::users::find(db, &name).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = password.to_owned();
    let verified = hashing
        .run(move || {
            // The dummy hash is made here on first use: making it is a hash too.
            let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
            PasswordHash::new(hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await?;
    match user {
        Some(u) if verified => Ok(SignedIn {
            id: u.id,
            username: u.username,
        }),
        _ => Err(wrong),
    }
}

/// A valid hash of a password nobody knows, to verify against for unknown user names.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        Argon2::default()
            .hash_password(b"no user has this password; it only burns time")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert_eq!(normalize_username("  Ada.L ").unwrap(), "ada.l");
        for bad in ["ab", "a b c", "<script>", &"x".repeat(41)] {
            assert!(normalize_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_verify() {
        let hash = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(hash.starts_with("$argon2id$"));
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
        assert!(PasswordHash::new(dummy_hash()).is_ok());
    }
}
