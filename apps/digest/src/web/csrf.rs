//! CSRF protection.
//!
//! - Forms: a synchronizer token. Each session holds a random token (256 bits); every form
//!   carries it in a hidden `csrf` field, and every form POST must present it (compared in
//!   constant time) or gets 403. Signing in gives the session a new token.
//! - JSON API: every request other than `GET`/`HEAD` must carry an `X-Requested-With` header
//!   (any value). A page on another site cannot add a custom header to a cross-origin request
//!   without a CORS preflight, which this app never grants; together with the `SameSite=Lax`
//!   session cookie this keeps other sites from using a visitor's session.

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shoal_kit::Session;

use super::error::{Api, AppError};

const KEY: &str = "csrf";

/// The session's form token, made (and stored) on first use.
pub(crate) fn token(session: &Session) -> Result<String, AppError> {
    if let Some(t) = session.get::<String>(KEY)? {
        return Ok(t);
    }
    renew(session)
}

/// Gives the session a new token.
pub(crate) fn renew(session: &Session) -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::internal("random token", &e))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    session.insert(KEY, &token)?;
    Ok(token)
}

/// Refuses (403) unless `presented` is the session's token.
pub(crate) fn check(session: &Session, presented: Option<&str>) -> Result<(), AppError> {
    let expected = session.get::<String>(KEY)?;
    match (expected, presented) {
        (Some(e), Some(p)) if matches(&e, p) => Ok(()),
        _ => Err(refused()),
    }
}

/// Whether `presented` is the token `expected` (in constant time).
pub(crate) fn matches(expected: &str, presented: &str) -> bool {
    constant_time_eq(expected.as_bytes(), presented.as_bytes())
}

/// The answer to a form without the right token.
pub(crate) fn refused() -> AppError {
    AppError::Forbidden(
        "the form's security token is missing or out of date: reload the page and try again",
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware for `/api`: state-changing requests need an `X-Requested-With` header.
pub(crate) async fn require_api_header(request: Request, next: Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let has_header = request
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| !v.is_empty());
    if safe || has_header {
        next.run(request).await
    } else {
        Api(AppError::Forbidden(
            "API requests other than GET need an `X-Requested-With` header (CSRF protection)",
        ))
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
