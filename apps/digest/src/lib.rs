//! digest: shoal's reference app.
//!
//! - `inspect`: the streaming report (size, SHA-256, BLAKE3, type, text lines and encoding).
//! - `fetch`: the URL fetcher that refuses private and local addresses.
//! - `pipeline`: a byte stream (an upload or a download) through the hashers into scratch.

pub mod fetch;
pub mod inspect;
pub mod pipeline;
