//! A config that does not deserialize, said in one line: an unknown key names itself, where it was
//! written (the file, or the environment variable) and the nearest known key. The known keys are
//! the `Raw` structs' own fields (serde's `deny_unknown_fields` hands them over with the error),
//! so there is no second list to keep in step.

use figment::error::Kind;

use super::one_line;

/// One line for a figment error: "did you mean" for an unknown key, the key and its source for
/// anything else.
pub(super) fn describe(e: &figment::Error) -> String {
    let Kind::UnknownField(found, expected) = &e.kind else {
        return one_line(&e.to_string());
    };
    // The path ends in the unknown key itself; before it, the section it was written in.
    let mut path: Vec<&str> = e.path.iter().map(String::as_str).collect();
    if let Some(p) = &e.profile
        && path.first().is_some_and(|f| p.as_str() == *f)
    {
        path.remove(0);
    }
    if path.last() != Some(&found.as_str()) {
        path.push(found);
    }
    let section = &path[..path.len() - 1];
    let md = e.metadata.as_ref();
    let env = md.is_some_and(|m| m.name.contains("environment"));
    let shown = env_or_key(env, section, found);
    let place = match md
        .and_then(|m| m.source.as_ref())
        .and_then(|s| s.file_path())
    {
        Some(file) => format!(" in {}", file.display()),
        None if env => " (environment)".to_string(),
        None => String::new(),
    };
    match closest(found, expected) {
        Some(k) => format!(
            "{shown}{place} is not a config key: did you mean {}?",
            env_or_key(env, section, k)
        ),
        None => format!(
            "{shown}{place} is not a config key{}: known keys here are {}",
            if section.is_empty() {
                String::new()
            } else {
                format!(" in [{}]", section.join("."))
            },
            expected
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The key as its source spells it: `sync.overlap` in a file, `PPSYNC_SYNC__OVERLAP` in the
/// environment (sections joined by `__`, as `Config::load` splits them).
fn env_or_key(env: bool, section: &[&str], key: &str) -> String {
    let parts: Vec<&str> = section.iter().copied().chain([key]).collect();
    if env {
        format!("PPSYNC_{}", parts.join("__").to_ascii_uppercase())
    } else {
        format!("`{}`", parts.join("."))
    }
}

/// The known key nearest to `found`, if it is near enough to be a slip of the keyboard: at most a
/// third of its letters off (at least one, at most three).
pub(super) fn closest<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    let found = found.to_ascii_lowercase();
    let limit = (found.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (levenshtein(&found, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance (insertions, deletions, substitutions), by the textbook two-row method: written
/// here because the one crate for it (`strsim`) is not among the vetted packages, and config keys
/// are a few dozen short words.
pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        for (a, b, d) in [
            ("", "", 0),
            ("overlap", "overlap", 0),
            ("overlapp", "overlap", 1),
            ("ovrelap", "overlap", 2),
            ("databse_url", "database_url", 1),
            ("kitten", "sitting", 3),
            ("", "abc", 3),
        ] {
            assert_eq!(levenshtein(a, b), d, "{a} / {b}");
            assert_eq!(levenshtein(b, a), d, "{b} / {a}");
        }
    }

    #[test]
    fn the_nearest_key_if_near_enough() {
        let known = ["window", "webhook_url", "webhook_secret", "command"];
        for (found, want) in [
            ("widow", Some("window")),
            ("WINDOW", Some("window")),
            ("webhook_ur", Some("webhook_url")),
            ("webhook_secrte", Some("webhook_secret")),
            ("commnad", Some("command")),
            ("x", None),
            ("email", None),
            ("smtp_host", None),
        ] {
            assert_eq!(closest(found, &known), want, "{found}");
        }
    }
}
