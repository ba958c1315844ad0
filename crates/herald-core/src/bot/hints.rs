//! "Did you mean ...?" suggestions for misspelled keys, state names, intents and events.

/// The candidate closest to `word`, if it is close enough to be a plausible typo: at most one edit
/// for short words, about a third of the length for longer ones, ignoring case.
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for cand in candidates {
        let d = strsim::damerau_levenshtein(&lower, &cand.to_lowercase());
        let limit = (lower.chars().count().max(cand.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    best.map(|(_, c)| c)
}

/// `` `a`, `b`, `c` `` for a hint.
pub(crate) fn list<'a, I>(items: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Words people write for a key that has another name in `bot.yaml` (from other bot platforms).
const ALIASES: &[(&str, &str)] = &[
    ("answer", "a"),
    ("reply", "a"),
    ("text", "a"),
    ("say", "a"),
    ("button", "buttons"),
    ("goto", "go"),
    ("transition", "go"),
    ("js", "script"),
    ("code", "script"),
    ("condition", "if"),
    ("when", "if"),
    ("children", "states"),
    ("pattern", "q"),
    ("patterns", "q"),
];

/// "did you mean `x`?" or, without a close candidate, "expected one of: ...". Common names from
/// other platforms (`answer`, `goto`, ...) suggest their `bot.yaml` spelling.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let aliases = ALIASES
        .iter()
        .filter(|(_, to)| candidates.contains(to))
        .map(|(from, _)| *from);
    let guess = closest(word, candidates.iter().copied().chain(aliases)).map(|g| {
        ALIASES
            .iter()
            .find(|(from, to)| *from == g && candidates.contains(to))
            .map_or(g, |(_, to)| *to)
    });
    match guess {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("expected one of: {}", list(candidates.iter().copied())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested_and_far_ones_are_not() {
        let keys = ["name", "token", "intents", "states"];
        assert_eq!(closest("intnets", keys), Some("intents"));
        assert_eq!(closest("stats", keys), Some("states"));
        assert_eq!(closest("NAME", keys), Some("name"));
        assert_eq!(closest("banana", keys), None);
        assert_eq!(
            did_you_mean("zzz", &["a", "b"]),
            "expected one of: `a`, `b`"
        );
        assert_eq!(did_you_mean("anwser", &["a", "go"]), "did you mean `a`?");
        assert_eq!(did_you_mean("goto", &["a", "go"]), "did you mean `go`?");
    }
}
