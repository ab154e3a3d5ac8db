//! An upload, handled entirely within its request: the multipart field is streamed through
//! the hashers into a file in a fresh scratch directory, the report is stored, and the
//! directory is removed before the response is sent. The browser's file name is kept as
//! display text only; the scratch file always has the same fixed name.
//!
//! The upload routes lift the body limit for the file, so every other field is read with a
//! bound of its own ([`MAX_FIELD_BYTES`], at most [`MAX_FIELDS`] of them): a field that runs
//! past it is answered with 413 as soon as the bound is crossed, without reading on. The
//! multipart parser also keeps a part's headers in memory until they end, so [`meter`] puts a
//! bound ([`MAX_BEFORE_FILE`]) on all the body yields before the file's data starts.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{Multipart, Request};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::Frame;
use shoal_kit::Scratch;

use super::AppState;
use super::csrf;
use super::error::AppError;
use crate::db;
use crate::db::jobs::{self, Job};
use crate::intake;
use crate::pipeline::PipelineError;

/// The most a field other than `file` may hold (the form token is 64 bytes).
pub(crate) const MAX_FIELD_BYTES: usize = 4096;

/// The most fields a form may have before its file.
const MAX_FIELDS: usize = 32;

/// The most the body may yield before the file's data starts: the other fields, every part's
/// headers, and what the parser reads ahead. Generous next to a real form (a token and a
/// file name), since the body arrives in frames of up to a few hundred KiB.
pub(crate) const MAX_BEFORE_FILE: u64 = 2 << 20;

/// What an upload's body may still yield before its file starts (shared by [`meter`]'s body
/// and [`receive`]).
#[derive(Debug, Clone)]
pub(crate) struct Allowance(Arc<AllowanceState>);

#[derive(Debug)]
struct AllowanceState {
    /// Bytes left; [`UNLIMITED`] once the file is being read (its own limit applies there).
    left: AtomicU64,
    exceeded: AtomicBool,
}

const UNLIMITED: u64 = u64::MAX;

impl Allowance {
    fn new(bytes: u64) -> Allowance {
        Allowance(Arc::new(AllowanceState {
            left: AtomicU64::new(bytes),
            exceeded: AtomicBool::new(false),
        }))
    }

    fn unlimit(&self) {
        self.0.left.store(UNLIMITED, Ordering::SeqCst);
    }

    fn exceeded(&self) -> bool {
        self.0.exceeded.load(Ordering::SeqCst)
    }
}

/// Middleware for the upload routes: meters the body against an [`Allowance`] that the
/// handler finds in the request's extensions and hands to [`receive`].
pub(crate) async fn meter(request: Request, next: Next) -> Response {
    let allowance = Allowance::new(MAX_BEFORE_FILE);
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(allowance.clone());
    let body = Body::new(Metered {
        inner: body,
        allowance,
        pause: false,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// A body that fails once it has yielded more than its allowance.
struct Metered {
    inner: Body,
    allowance: Allowance,
    pause: bool,
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let state = &this.allowance.0;
        let left = state.left.load(Ordering::SeqCst);
        if left != UNLIMITED && std::mem::take(&mut this.pause) {
            // The parser takes all that is ready in one go: one frame per poll lets it look at
            // each frame (and find the file) before it takes the next.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if left != UNLIMITED
            && let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
            && let Some(data) = data
        {
            let len = u64::try_from(data.len()).unwrap_or(UNLIMITED);
            if len > left {
                state.exceeded.store(true, Ordering::SeqCst);
                return Poll::Ready(Some(Err(axum::Error::new(
                    "the form's fields before the file are too large",
                ))));
            }
            state.left.store(left - len, Ordering::SeqCst);
            this.pause = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Receives the form's `file` field and stores its report as a finished `upload` job of
/// `user`. With `csrf_token`, a `csrf` field holding it must come before the file (a page's
/// form puts its hidden fields first).
pub(crate) async fn receive(
    state: &AppState,
    user: i64,
    mut multipart: Multipart,
    csrf_token: Option<&str>,
    allowance: &Allowance,
) -> Result<Job, AppError> {
    let malformed = |e| malformed(allowance, e);
    let mut token_seen = csrf_token.is_none();
    let mut fields = 0;
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(AppError::BadRequest(format!(
                "the form has more than {MAX_FIELDS} fields"
            )));
        }
        match field.name() {
            Some("file") => {
                if !token_seen {
                    return Err(csrf::refused());
                }
                // The turn is held until the scratch file is gone: it bounds the disk space
                // of uploads too.
                let Some(turn) = state.uploads.enter().await else {
                    return Err(AppError::Busy("uploads"));
                };
                allowance.unlimit();
                let name = display_name(field.file_name());
                let scratch =
                    Scratch::new().map_err(|e| AppError::internal("creating scratch", &e))?;
                let dest = scratch.path().join("upload");
                let result = intake::upload(field, &dest, state.config.max_bytes).await;
                // The file goes before anything is answered, whatever the outcome.
                drop(scratch);
                drop(turn);
                let report = result.map_err(|e| match e {
                    PipelineError::TooLarge { .. } => AppError::TooLarge(e.to_string()),
                    PipelineError::Input { .. } => AppError::BadRequest(e.to_string()),
                    other => AppError::internal("digesting an upload", &other),
                })?;
                return Ok(
                    jobs::create_upload(&state.db, user, &name, &report, db::now_ms()).await?,
                );
            }
            Some("csrf") => {
                let presented = small_field(field, allowance).await?;
                if let Some(expected) = csrf_token {
                    token_seen = csrf::matches(expected, &String::from_utf8_lossy(&presented));
                }
            }
            // Skipping a field would still read all of it: read it under the same bound.
            _ => {
                small_field(field, allowance).await?;
            }
        }
    }
    if token_seen {
        Err(AppError::BadRequest(
            "the form has no file (a multipart field named `file`)".to_owned(),
        ))
    } else {
        Err(csrf::refused())
    }
}

/// A field's bytes, refused with 413 as soon as it passes [`MAX_FIELD_BYTES`].
async fn small_field(mut field: Field<'_>, allowance: &Allowance) -> Result<Vec<u8>, AppError> {
    let mut value = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| malformed(allowance, e))? {
        if value.len() + chunk.len() > MAX_FIELD_BYTES {
            let name: String = (field.name().unwrap_or_default().chars())
                .filter(|c| !c.is_control())
                .take(40)
                .collect();
            return Err(AppError::TooLarge(format!(
                "the form field `{name}` is larger than {MAX_FIELD_BYTES} bytes"
            )));
        }
        value.extend_from_slice(&chunk);
    }
    Ok(value)
}

fn malformed(allowance: &Allowance, e: MultipartError) -> AppError {
    if allowance.exceeded() {
        return AppError::TooLarge(format!(
            "the form's fields before the file are larger than {MAX_BEFORE_FILE} bytes"
        ));
    }
    AppError::BadRequest(format!("the upload is not a valid form: {}", e.body_text()))
}

/// The last component of what the browser sent as the file name, without control
/// characters, at most 255 characters: text to show, never a path.
pub(crate) fn display_name(sent: Option<&str>) -> String {
    let sent = sent.unwrap_or_default();
    let last = sent.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload".to_owned()
    } else {
        clean.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::display_name;

    #[test]
    fn file_names_are_text_not_paths() {
        assert_eq!(display_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(display_name(Some("C:\\Users\\x\\report.pdf")), "report.pdf");
        assert_eq!(display_name(Some("a\u{0}b\nc.txt")), "abc.txt");
        assert_eq!(display_name(Some("..")), "upload");
        assert_eq!(display_name(None), "upload");
        assert_eq!(display_name(Some(&"x".repeat(300))).len(), 255);
    }
}
