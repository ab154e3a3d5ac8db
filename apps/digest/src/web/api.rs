//! The JSON API under `/api`: the same capabilities as the pages. Requests other than `GET`
//! need an `X-Requested-With` header (see [`super::csrf`]); errors are `{"error": "…"}`.

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use shoal_kit::Session;

use super::auth;
use super::error::{Api, AppError};
use super::{AppState, upload};
use crate::db::{self, jobs};

/// A body that is not the expected JSON (or has no JSON content type): 400, as JSON.
fn bad_json(rejection: JsonRejection) -> Api {
    Api(AppError::BadRequest(rejection.body_text()))
}

#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

/// `POST /api/signup` `{"username", "password"}` → 201 `{"id", "username"}`, signed in.
pub(crate) async fn signup(
    State(state): State<AppState>,
    session: Session,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, Api> {
    let Json(c) = body.map_err(bad_json)?;
    let user = auth::sign_up(&state.db, &state.hashing, &c.username, &c.password).await?;
    auth::start(&session, &user)?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// `POST /api/signin` `{"username", "password"}` → 200 `{"id", "username"}`.
pub(crate) async fn signin(
    State(state): State<AppState>,
    session: Session,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Response, Api> {
    let Json(c) = body.map_err(bad_json)?;
    let user = auth::sign_in(&state.db, &state.hashing, &c.username, &c.password).await?;
    auth::start(&session, &user)?;
    Ok(Json(user).into_response())
}

/// `POST /api/signout` → 204.
pub(crate) async fn signout(session: Session) -> StatusCode {
    auth::end(&session);
    StatusCode::NO_CONTENT
}

/// `GET /api/me` → `{"id", "username"}` or 401.
pub(crate) async fn me(session: Session) -> Result<Response, Api> {
    Ok(Json(auth::required(&session)?).into_response())
}

/// `GET /api/jobs` → `{"jobs": [job, …]}`, newest first (at most 100).
pub(crate) async fn list(State(state): State<AppState>, session: Session) -> Result<Response, Api> {
    let user = auth::required(&session)?;
    let list = jobs::list(&state.db, user.id, 100).await?;
    Ok(Json(json!({ "jobs": list })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewUrlJob {
    url: String,
}

/// `POST /api/jobs` `{"url"}` → 202 `{"job": job, "report": null}`: queued for a worker.
pub(crate) async fn submit_url(
    State(state): State<AppState>,
    session: Session,
    body: Result<Json<NewUrlJob>, JsonRejection>,
) -> Result<Response, Api> {
    let user = auth::required(&session)?;
    let Json(body) = body.map_err(bad_json)?;
    let url = super::check_url(&body.url)?;
    let job = jobs::create_url_job(&state.db, user.id, &url, db::now_ms()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": job, "report": null })),
    )
        .into_response())
}

/// `POST /api/uploads` (multipart, field `file`) → 201 `{"job": job, "report": report}`.
pub(crate) async fn upload(
    State(state): State<AppState>,
    session: Session,
    Extension(allowance): Extension<upload::Allowance>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, Api> {
    let user = auth::required(&session)?;
    let multipart = multipart.map_err(|r| AppError::BadRequest(r.body_text()))?;
    let job = upload::receive(&state, user.id, multipart, None, &allowance).await?;
    let (job, report) = jobs::get(&state.db, user.id, job.id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "job": job, "report": report })),
    )
        .into_response())
}

/// `GET /api/jobs/{id}` → `{"job": job, "report": report or null}`, or 404.
pub(crate) async fn job(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Response, Api> {
    let user = auth::required(&session)?;
    let (job, report) = jobs::get(&state.db, user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(Json(json!({ "job": job, "report": report })).into_response())
}
