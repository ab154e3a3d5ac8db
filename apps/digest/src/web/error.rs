//! Errors of web handlers: a status and a message safe to show. Pages render them as HTML,
//! the API (through [`Api`]) as `{"error": "…"}`. Internal details go to stderr only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::html;

/// What went wrong, as the client may learn it.
#[derive(Debug)]
pub(crate) enum AppError {
    /// The input is not valid; the text says why.
    BadRequest(String),
    /// Not signed in, or wrong credentials.
    Unauthorized(&'static str),
    /// The CSRF check failed.
    Forbidden(&'static str),
    NotFound,
    /// The input conflicts with stored data (a taken user name).
    Conflict(String),
    /// The upload is larger than `DIGEST_MAX_BYTES`.
    TooLarge(String),
    /// Too many requests want a password hash, or to upload, at once (the text names which:
    /// `sign-ins`, `uploads`); try again after [`RETRY_AFTER_SECS`].
    Busy(&'static str),
    /// Something failed on our side; the detail has been logged.
    Internal,
}

/// What a [`AppError::Busy`] answer tells the client to wait, in seconds.
pub(crate) const RETRY_AFTER_SECS: u32 = 2;

impl AppError {
    /// Logs `err` with its causes and hides it from the client.
    pub(crate) fn internal(what: &str, err: &dyn std::error::Error) -> AppError {
        let mut line = format!("digest: {what}: {err}");
        let mut source = err.source();
        while let Some(s) = source {
            line.push_str(": ");
            line.push_str(&s.to_string());
            source = s.source();
        }
        eprintln!("{line}");
        AppError::Internal
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            AppError::BadRequest(m) | AppError::Conflict(m) | AppError::TooLarge(m) => m.clone(),
            AppError::Unauthorized(m) | AppError::Forbidden(m) => (*m).to_owned(),
            AppError::NotFound => "not found".to_owned(),
            AppError::Busy(what) => {
                format!("too many {what} at once: try again in {RETRY_AFTER_SECS} seconds")
            }
            AppError::Internal => "something went wrong on our side; try again".to_owned(),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::internal("database query failed", &e)
    }
}

impl From<shoal_kit::SessionError> for AppError {
    fn from(e: shoal_kit::SessionError) -> Self {
        AppError::internal("session", &e)
    }
}

impl AppError {
    /// Adds the headers this error's answer needs besides its body.
    fn headers(&self, mut response: Response) -> Response {
        if matches!(self, AppError::Busy(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{code} · digest</title></head>
<body><h1>{code}</h1>{message}<p><a href="/">Back to digest</a></p></body></html>
"#,
            code = status.as_u16(),
            message = html::message("error", Some(&self.message())),
        );
        self.headers((status, Html(body)).into_response())
    }
}

/// An [`AppError`] answered as JSON: `{"error": "…"}`.
#[derive(Debug)]
pub(crate) struct Api(pub(crate) AppError);

impl<E: Into<AppError>> From<E> for Api {
    fn from(e: E) -> Self {
        Api(e.into())
    }
}

impl IntoResponse for Api {
    fn into_response(self) -> Response {
        let response = (
            self.0.status(),
            Json(serde_json::json!({ "error": self.0.message() })),
        )
            .into_response();
        self.0.headers(response)
    }
}
