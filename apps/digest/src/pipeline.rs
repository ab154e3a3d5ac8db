//! A byte stream through the hashers into scratch (being written).
