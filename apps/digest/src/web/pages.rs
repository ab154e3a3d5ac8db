//! The HTML pages: sign up, sign in, sign out, "my files" (with the URL and upload forms) and
//! a job's report. Every form POST checks the CSRF token first; every value shown is escaped.

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use shoal_kit::Session;

use super::auth::{self, SignedIn};
use super::error::AppError;
use super::html::{self, Viewer, esc};
use super::{AppState, csrf, upload};
use crate::db::jobs::{Job, Report};
use crate::db::{self, jobs};

/// `GET /`: my files, or the sign-in page.
pub(crate) async fn home(session: Session) -> Result<Redirect, AppError> {
    Ok(if auth::current(&session)?.is_some() {
        Redirect::to("/files")
    } else {
        Redirect::to("/signin")
    })
}

#[derive(Deserialize)]
pub(crate) struct CredentialsForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    csrf: Option<String>,
}

#[derive(Clone, Copy)]
enum Door {
    SignUp,
    SignIn,
}

fn door_page(
    session: &Session,
    door: Door,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let csrf = csrf::token(session)?;
    let (title, id, action, button, other) = match door {
        Door::SignUp => (
            "Sign up",
            "signup",
            "/signup",
            "Create account",
            r#"<p>Have an account? <a href="/signin">Sign in</a>.</p>"#,
        ),
        Door::SignIn => (
            "Sign in",
            "signin",
            "/signin",
            "Sign in",
            r#"<p>New here? <a href="/signup">Sign up</a>.</p>"#,
        ),
    };
    let autocomplete = match door {
        Door::SignUp => "new-password",
        Door::SignIn => "current-password",
    };
    let body = format!(
        r#"{message}
<form method="post" action="{action}" id="{id}-form" class="card">
<input type="hidden" name="csrf" value="{csrf}">
<label for="username">User name</label>
<input type="text" id="username" name="username" value="{username}" autocomplete="username" required minlength="3" maxlength="40">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="{autocomplete}" required minlength="8">
<button type="submit" id="{id}-submit">{button}</button>
</form>
{other}"#,
        message = html::message("error", error),
        csrf = esc(&csrf),
        username = esc(username),
    );
    let viewer = Viewer {
        username: None,
        csrf: &csrf,
    };
    Ok((status, Html(html::page(title, &viewer, &body))).into_response())
}

/// `GET /signup`.
pub(crate) async fn signup_form(session: Session) -> Result<Response, AppError> {
    door_page(&session, Door::SignUp, StatusCode::OK, "", None)
}

/// `GET /signin`.
pub(crate) async fn signin_form(session: Session) -> Result<Response, AppError> {
    door_page(&session, Door::SignIn, StatusCode::OK, "", None)
}

/// `POST /signup`: creates the account and signs in.
pub(crate) async fn signup(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CredentialsForm>,
) -> Result<Response, AppError> {
    csrf::check(&session, form.csrf.as_deref())?;
    match auth::sign_up(&state.db, &state.hashing, &form.username, &form.password).await {
        Ok(user) => {
            auth::start(&session, &user)?;
            Ok(Redirect::to("/files").into_response())
        }
        Err(e @ (AppError::BadRequest(_) | AppError::Conflict(_))) => door_page(
            &session,
            Door::SignUp,
            e.status(),
            &form.username,
            Some(&e.message()),
        ),
        Err(e) => Err(e),
    }
}

/// `POST /signin`.
pub(crate) async fn signin(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CredentialsForm>,
) -> Result<Response, AppError> {
    csrf::check(&session, form.csrf.as_deref())?;
    match auth::sign_in(&state.db, &state.hashing, &form.username, &form.password).await {
        Ok(user) => {
            auth::start(&session, &user)?;
            Ok(Redirect::to("/files").into_response())
        }
        Err(e @ AppError::Unauthorized(_)) => door_page(
            &session,
            Door::SignIn,
            e.status(),
            &form.username,
            Some(&e.message()),
        ),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    csrf: Option<String>,
}

/// `POST /signout`.
pub(crate) async fn signout(
    session: Session,
    Form(form): Form<TokenForm>,
) -> Result<Redirect, AppError> {
    csrf::check(&session, form.csrf.as_deref())?;
    auth::end(&session);
    Ok(Redirect::to("/signin"))
}

/// The signed-in user, or a redirect to the sign-in page.
fn signed_in_or_redirect(session: &Session) -> Result<Result<SignedIn, Response>, AppError> {
    Ok(auth::current(session)?.ok_or_else(|| Redirect::to("/signin").into_response()))
}

/// `GET /files`: the user's jobs and the forms to add one.
pub(crate) async fn files(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, AppError> {
    let user = match signed_in_or_redirect(&session)? {
        Ok(user) => user,
        Err(redirect) => return Ok(redirect),
    };
    files_page(&state, &session, &user, StatusCode::OK, None).await
}

async fn files_page(
    state: &AppState,
    session: &Session,
    user: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let csrf = csrf::token(session)?;
    let list = jobs::list(&state.db, user.id, 100).await?;
    let mut rows = String::new();
    for job in &list {
        rows.push_str(&job_row(job));
    }
    let table = if list.is_empty() {
        r#"<p id="no-jobs">No files yet: submit a URL or upload a file.</p>"#.to_owned()
    } else {
        format!(
            r#"<table id="jobs"><thead><tr><th>#</th><th>File</th><th>State</th><th>Progress</th></tr></thead>
<tbody>{rows}</tbody></table>"#
        )
    };
    let body = format!(
        r#"{message}
<form method="post" action="/files/url" id="url-form" class="card">
<input type="hidden" name="csrf" value="{csrf}">
<label for="url">Digest a file from a URL (http or https)</label>
<input type="url" id="url" name="url" required maxlength="2048" placeholder="https://example.com/file.iso">
<button type="submit" id="url-submit">Submit URL</button>
</form>
<form method="post" action="/files/upload" id="upload-form" class="card" enctype="multipart/form-data">
<input type="hidden" name="csrf" value="{csrf}">
<label for="file">Or upload a file (at most {limit})</label>
<input type="file" id="file" name="file" required>
<button type="submit" id="upload-submit">Upload</button>
</form>
{table}"#,
        message = html::message("error", error),
        csrf = esc(&csrf),
        limit = html::bytes(i64::try_from(state.config.max_bytes).unwrap_or(i64::MAX)),
    );
    let viewer = Viewer {
        username: Some(&user.username),
        csrf: &csrf,
    };
    Ok((status, Html(html::page("My files", &viewer, &body))).into_response())
}

fn job_name(job: &Job) -> &str {
    job.file_name
        .as_deref()
        .or(job.url.as_deref())
        .unwrap_or("(unnamed)")
}

fn progress_text(job: &Job) -> String {
    match job.bytes_total {
        Some(total) => format!("{} of {}", html::bytes(job.bytes_done), html::bytes(total)),
        None => html::bytes(job.bytes_done),
    }
}

fn job_row(job: &Job) -> String {
    format!(
        r#"<tr id="job-{id}"><td>{id}</td><td class="name"><a class="job-link" href="/jobs/{id}">{name}</a></td><td class="state state-{state}">{state}</td><td>{progress}</td></tr>
"#,
        id = job.id,
        name = esc(job_name(job)),
        state = esc(&job.state),
        progress = esc(&progress_text(job)),
    )
}

#[derive(Deserialize)]
pub(crate) struct UrlForm {
    #[serde(default)]
    url: String,
    csrf: Option<String>,
}

/// `POST /files/url`: queues a download and shows its page.
pub(crate) async fn submit_url(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<UrlForm>,
) -> Result<Response, AppError> {
    csrf::check(&session, form.csrf.as_deref())?;
    let user = auth::required(&session)?;
    let url = match super::check_url(&form.url) {
        Ok(url) => url,
        Err(e) => {
            return files_page(&state, &session, &user, e.status(), Some(&e.message())).await;
        }
    };
    let job = jobs::create_url_job(&state.db, user.id, &url, db::now_ms()).await?;
    Ok(Redirect::to(&format!("/jobs/{}", job.id)).into_response())
}

/// `POST /files/upload`: digests the upload within this request and shows its report.
pub(crate) async fn upload(
    State(state): State<AppState>,
    session: Session,
    Extension(allowance): Extension<upload::Allowance>,
    multipart: Multipart,
) -> Result<Response, AppError> {
    let user = auth::required(&session)?;
    let expected = csrf::token(&session)?;
    match upload::receive(&state, user.id, multipart, Some(&expected), &allowance).await {
        Ok(job) => Ok(Redirect::to(&format!("/jobs/{}", job.id)).into_response()),
        Err(e @ (AppError::BadRequest(_) | AppError::TooLarge(_))) => {
            files_page(&state, &session, &user, e.status(), Some(&e.message())).await
        }
        Err(e) => Err(e),
    }
}

/// `GET /jobs/{id}`: the job's state, live progress and report.
pub(crate) async fn job(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let user = match signed_in_or_redirect(&session)? {
        Ok(user) => user,
        Err(redirect) => return Ok(redirect),
    };
    let Some((job, report)) = jobs::get(&state.db, user.id, id).await? else {
        return Err(AppError::NotFound);
    };
    let csrf = csrf::token(&session)?;
    let (max, value) = match (&report, job.bytes_total) {
        (Some(_), _) => (1, Some(1)),
        (None, Some(total)) if total > 0 => (total, Some(job.bytes_done)),
        _ => (1, None),
    };
    let value = value.map_or_else(String::new, |v| format!(r#" value="{v}""#));
    let body = format!(
        r#"<section class="card" id="job" data-job-id="{id}" data-state="{state}">
<p>Source: <span id="source">{source}</span> ({kind})</p>
<p>State: <strong id="state" class="state-{state}">{state}</strong> · attempts: <span id="attempts">{attempts}</span></p>
<progress id="progress" max="{max}"{value}></progress>
<p id="progress-text">{progress}</p>
<p id="error" class="message error"{error_hidden}>{error}</p>
</section>
<section class="card" id="report"{report_hidden}>
<h2>Report</h2>
{report}
</section>
<p><a href="/files">Back to my files</a></p>"#,
        id = job.id,
        state = esc(&job.state),
        source = esc(job_name(&job)),
        kind = esc(&job.kind),
        attempts = job.attempts,
        progress = esc(&progress_text(&job)),
        error_hidden = if job.error.is_some() { "" } else { " hidden" },
        error = esc(job.error.as_deref().unwrap_or("")),
        report_hidden = if report.is_some() { "" } else { " hidden" },
        report = report_list(report.as_ref()),
    );
    let viewer = Viewer {
        username: Some(&user.username),
        csrf: &csrf,
    };
    let title = format!("Job {}", job.id);
    Ok(Html(html::page(&title, &viewer, &body)).into_response())
}

fn report_list(report: Option<&Report>) -> String {
    let field = |f: fn(&Report) -> String| report.map(f).unwrap_or_default();
    let not_text = |v: Option<String>| v.unwrap_or_else(|| "not text".to_owned());
    format!(
        r#"<dl class="report">
<dt>Size</dt><dd id="report-size">{size}</dd>
<dt>SHA-256</dt><dd id="report-sha256">{sha256}</dd>
<dt>BLAKE3</dt><dd id="report-blake3">{blake3}</dd>
<dt>Type</dt><dd id="report-type">{description}</dd>
<dt>Media type</dt><dd id="report-mime">{mime}</dd>
<dt>Lines</dt><dd id="report-lines">{lines}</dd>
<dt>Encoding</dt><dd id="report-encoding">{encoding}</dd>
</dl>"#,
        size = esc(&field(|r| format!(
            "{} bytes ({})",
            r.size,
            html::bytes(r.size)
        ))),
        sha256 = esc(&field(|r| r.sha256.clone())),
        blake3 = esc(&field(|r| r.blake3.clone())),
        description = esc(&field(|r| r.description.clone())),
        mime = esc(&field(|r| r.mime.clone())),
        lines = esc(&report.map_or_else(String::new, |r| not_text(
            r.text_lines.map(|n| n.to_string())
        ))),
        encoding = esc(&report.map_or_else(String::new, |r| not_text(r.text_encoding.clone()))),
    )
}
