//! The streaming report (being written).
