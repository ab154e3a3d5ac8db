//! The CSS and JavaScript, compiled and fingerprinted by `build.rs` and embedded in the
//! binary: served from memory at `/assets/NAME.HASH.EXT` with a year-long `immutable` cache
//! lifetime (a changed file gets a new name), and never written anywhere at run time.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One processed asset.
pub(crate) struct Asset {
    /// The source name, as pages ask for it (`app.css`).
    pub(crate) name: &'static str,
    /// The fingerprinted name it is served under (`app.3f9a….css`).
    pub(crate) file: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

pub(crate) static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The URL path of asset `name`.
///
/// # Panics
/// When there is no such asset: a page asking for one is a programming error that every
/// test of that page catches.
pub(crate) fn path(name: &str) -> String {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no asset named `{name}` in apps/digest/assets"));
    format!("/assets/{}", asset.file)
}

/// `GET /assets/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.file == file) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        asset.body,
    )
        .into_response()
}
