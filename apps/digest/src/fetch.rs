//! The URL fetcher (being written).
