//! "Did you mean …?" suggestions for mistyped names.

/// The candidate closest to `input`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::levenshtein(input, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= (candidate.chars().count() / 3).max(2))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(closest("wbe", ["web", "worker"]), Some("web"));
        assert_eq!(closest("workr", ["web", "worker"]), Some("worker"));
        assert_eq!(closest("database", ["web", "worker"]), None);
    }
}
