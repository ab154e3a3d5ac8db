//! digest: shoal's reference app.
//!
//! - `inspect`: the streaming report (size, SHA-256, BLAKE3, type, text lines and encoding).
//! - `fetch`: the URL fetcher that refuses private and local addresses.

pub mod fetch;
pub mod inspect;
