//! The notification sinks checked without sending anything: the webhook's and the SMTP server's
//! host answer a TCP connection; the command's program exists and may be run. A command line is
//! never shown (it commonly carries a credential), only its program.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Check;
use crate::notify::NotifyConfig;

/// How long a sink's host may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The checks of every configured sink (one line saying there is none, if so).
pub async fn sinks(n: &NotifyConfig) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(url) = &n.webhook_url {
        let origin = url.origin().ascii_serialization();
        out.push(
            match (url.host_str(), url.port_or_known_default()) {
                (Some(host), Some(port)) => connect(host, port).await,
                _ => Err("no host".to_string()),
            }
            .map_or_else(
                |e| Check::fail_transient("webhook", format!("{origin}: {e}")),
                |()| Check::pass("webhook", format!("{origin} answers (TCP; nothing sent)")),
            ),
        );
    }
    if let Some(cmd) = &n.command {
        out.push(command(cmd, &n.command_env));
    }
    if let Some(email) = &n.email {
        let at = format!("{}:{}", email.host, email.port);
        out.push(connect(&email.host, email.port).await.map_or_else(
            |e| Check::fail_transient("smtp", format!("{at}: {e}")),
            |()| Check::pass("smtp", format!("{at} answers (TCP; no mail sent)")),
        ));
    }
    if out.is_empty() {
        out.push(Check::pass("notify", "no sink configured"));
    }
    out
}

async fn connect(host: &str, port: u16) -> Result<(), String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect ({e})")),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// The program a `sh -c` command line starts, as far as can be told without a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// Written with a `/`: that file.
    Path(String),
    /// A bare name: looked up in PATH.
    Name(String),
    /// One of the shell's own commands.
    Builtin(String),
    /// Quoting, a variable, an assignment or a compound: the shell's to read.
    Unknown,
}

/// The first word of a command line, if it is a plain one.
pub fn command_program(cmd: &str) -> Program {
    const BUILTINS: &[&str] = &[
        ".", ":", "cd", "command", "echo", "eval", "exec", "exit", "export", "false", "printf",
        "read", "set", "test", "true", "[",
    ];
    let word = cmd.split_whitespace().next().unwrap_or("");
    if word.is_empty()
        || !word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+@%,:[".contains(c))
    {
        return Program::Unknown;
    }
    if BUILTINS.contains(&word) {
        Program::Builtin(word.to_string())
    } else if word.contains('/') {
        Program::Path(word.to_string())
    } else {
        Program::Name(word.to_string())
    }
}

/// The command check: its program is there and executable, found as `sh` would find it (PATH
/// from the environment only when `notify.command_env` passes it on, else the shell's default).
fn command(cmd: &str, command_env: &[String]) -> Check {
    const NAME: &str = "command";
    let path_var = if command_env.iter().any(|v| v == "PATH") {
        std::env::var("PATH").unwrap_or_default()
    } else {
        "/usr/local/bin:/usr/bin:/bin".to_string()
    };
    match command_program(cmd) {
        Program::Unknown => Check::pass(
            NAME,
            "set (its first word is the shell's to read: not checked)",
        ),
        Program::Builtin(b) => Check::pass(NAME, format!("{b} (a shell builtin)")),
        Program::Path(p) => match executable(Path::new(&p)) {
            Ok(()) => Check::pass(NAME, format!("{p} exists and is executable")),
            Err(e) => Check::fail(NAME, format!("{p}: {e}")),
        },
        Program::Name(name) => {
            let found: Option<PathBuf> = std::env::split_paths(&path_var)
                .map(|d| d.join(&name))
                .find(|p| executable(p).is_ok());
            match found {
                Some(p) => Check::pass(NAME, format!("{name} is {}", p.display())),
                None => Check::fail(
                    NAME,
                    format!(
                        "{name}: not found in the PATH the command gets: write its full path in notify.command"
                    ),
                ),
            }
        }
    }
}

fn executable(p: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        _ => e.to_string(),
    })?;
    if !meta.is_file() {
        return Err("is not a file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err("is not executable (chmod +x it)".into());
        }
    }
    Ok(())
}
