//! Relative paths in the config file mean "beside this file": `ppsync --config
//! /etc/ppsync/ppsync.toml status` run from cron or another folder finds the same mirror. A value
//! from the environment (`PPSYNC_DATABASE_URL`) keeps the working directory, as any other
//! command-line tool's would; so does a config without a file.
//!
//! The paths: `database_url` (a plain path or a `sqlite:` URL; the default `ppsync.db` too when
//! a file is loaded), and the program of `notify.command` when it is written as a relative path
//! (`hooks/notify.sh`, `./notify.sh`; a bare name is looked up in PATH by the shell).

use std::path::{Path, PathBuf};

use figment::Figment;

use super::Config;

impl Config {
    /// Resolves the file's relative paths against the file's folder (see the module's text).
    pub(super) fn resolve_paths(&mut self, fig: &Figment) {
        let Some(file) = &self.source else { return };
        let Some(dir) = folder_of(file) else { return };
        let from_file = |key: &str| match fig.find_metadata(key) {
            // Not set anywhere: a default, which lives beside the file too.
            None => true,
            Some(md) => md.source.as_ref().and_then(|s| s.file_path()).is_some(),
        };
        if from_file("database_url") {
            self.database_url = resolve_database_url(&self.database_url, &dir);
        }
        if let Some(cmd) = &self.notify.command
            && from_file("notify.command")
        {
            self.notify.command = Some(resolve_command(cmd, &dir));
        }
    }
}

/// The absolute folder of a config file (its parent, made absolute against the working directory).
fn folder_of(file: &Path) -> Option<PathBuf> {
    let parent = file.parent().unwrap_or(Path::new(""));
    std::path::absolute(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    })
    .ok()
}

/// `database_url` with a relative SQLite path made absolute under `dir`; PostgreSQL URLs,
/// absolute paths and SQLite's `:memory:` are returned as they are.
pub(super) fn resolve_database_url(url: &str, dir: &Path) -> String {
    let u = url.trim();
    let (prefix, rest) = match u.strip_prefix("sqlite:") {
        Some(r) => match r.strip_prefix("//") {
            Some(r) => ("sqlite://", r),
            None => ("sqlite:", r),
        },
        None if u.contains("://") => return url.to_string(),
        None => ("", u),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, format!("?{q}")),
        None => (rest, String::new()),
    };
    if path.is_empty() || path.starts_with(':') || Path::new(path).is_absolute() {
        return url.to_string();
    }
    let joined = dir.join(path);
    format!("{prefix}{}{query}", joined.display())
}

/// `notify.command` with a relative program path (one holding a `/`, written first and unquoted)
/// made absolute under `dir`; anything else is the shell's to read, and is left as written.
pub(super) fn resolve_command(cmd: &str, dir: &Path) -> String {
    let trimmed = cmd.trim_start();
    let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let (program, args) = trimmed.split_at(end);
    let plain = program
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@%,".contains(c));
    if !plain || !program.contains('/') || program.starts_with('/') {
        return cmd.to_string();
    }
    let joined = dir.join(program).display().to_string();
    format!("{}{args}", shell_quote(&joined))
}

/// A word for `sh -c`: as it is when it holds nothing the shell reads, else single-quoted.
fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@%,:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_resolve_against_the_folder() {
        let dir = Path::new("/etc/ppsync");
        for (url, want) in [
            ("ppsync.db", "/etc/ppsync/ppsync.db"),
            ("data/mirror.db", "/etc/ppsync/data/mirror.db"),
            ("./m.db", "/etc/ppsync/./m.db"),
            ("sqlite:m.db", "sqlite:/etc/ppsync/m.db"),
            (
                "sqlite://m.db?mode=rwc",
                "sqlite:///etc/ppsync/m.db?mode=rwc",
            ),
            ("/var/lib/ppsync/m.db", "/var/lib/ppsync/m.db"),
            ("sqlite:///var/lib/m.db", "sqlite:///var/lib/m.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            (":memory:", ":memory:"),
            (
                "postgres://u:p@db.example/ppsync",
                "postgres://u:p@db.example/ppsync",
            ),
            ("postgresql://db/x", "postgresql://db/x"),
            ("", ""),
        ] {
            assert_eq!(resolve_database_url(url, dir), want, "{url}");
        }
    }

    #[test]
    fn a_relative_program_resolves_and_the_rest_is_left_to_the_shell() {
        let dir = Path::new("/etc/ppsync");
        for (cmd, want) in [
            (
                "hooks/notify.sh --to ops",
                "/etc/ppsync/hooks/notify.sh --to ops",
            ),
            ("./notify.sh", "/etc/ppsync/./notify.sh"),
            ("/usr/bin/logger -t ppsync", "/usr/bin/logger -t ppsync"),
            ("logger -t ppsync", "logger -t ppsync"),
            ("'my hooks/n.sh' x", "'my hooks/n.sh' x"),
            ("$HOME/n.sh", "$HOME/n.sh"),
            ("~/n.sh", "~/n.sh"),
            ("X=1 ./n.sh", "X=1 ./n.sh"),
        ] {
            assert_eq!(resolve_command(cmd, dir), want, "{cmd}");
        }
        assert_eq!(
            resolve_command("n/x.sh", Path::new("/srv/my dir")),
            "'/srv/my dir/n/x.sh'"
        );
    }
}
