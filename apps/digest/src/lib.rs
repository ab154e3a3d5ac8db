//! digest: shoal's reference app.
//!
//! - `inspect`: the streaming report (size, SHA-256, BLAKE3, type, text lines and encoding).
//! - `fetch`: the URL fetcher that refuses private and local addresses.
//! - `pipeline`: a byte stream (an upload or a download) through the hashers into scratch.
//! - `config`: the environment (`DATABASE_URL`, `SESSION_URL`, `DIGEST_*`).
//! - `db`: users, jobs and reports in PostgreSQL or SQLite; `queue`: claiming jobs with leases.
//! - `intake`: uploads and downloads into the pipeline; `web`: the `web` process (pages, JSON
//!   API, assets); `worker`: the `worker` process.

pub mod config;
pub mod db;
pub mod fetch;
pub mod inspect;
pub mod intake;
pub mod pipeline;
pub mod queue;
pub mod web;
pub mod worker;
