//! The command sink: `sh -c` with the notification on stdin, in a cleared environment and a
//! process group of its own, killed with the group at its timeout or on shutdown.

use std::time::Duration;

use super::{Dispatcher, one_line};

impl Dispatcher {
    /// Runs `sh -c cmd` with the payload and a newline on stdin, in a cleared environment (only
    /// the names `notify.command_env` allows), in a process group of its own that is killed at
    /// `notify.command_timeout` or when the caller gives up (shutdown drops this future).
    pub(super) async fn run_command(&self, cmd: &str, payload: &str) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(cmd)
            // ppsync's own environment holds the client secret and the database password.
            .env_clear()
            .envs(
                self.cfg
                    .command_env
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("notify command: cannot start sh: {e}"))?;
        // Declared after `child`, so dropped before it: the group dies before sh is reaped.
        let mut group = Group(child.id());
        let stderr = child
            .stderr
            .take()
            .map(|e| AbortOnDrop(tokio::spawn(tail(e))));
        let stdin = child.stdin.take();
        let run = async {
            if let Some(mut stdin) = stdin {
                // A command that does not read its input is its own business: a closed pipe is
                // no failure. Dropping stdin closes it (end of input).
                let _ = stdin.write_all(payload.as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
            }
            child.wait().await
        };
        let status = match tokio::time::timeout(self.cfg.command_timeout, run).await {
            Ok(status) => {
                // Reaped: its pid (the group's id) may be reused from now on.
                group.0 = None;
                status?
            }
            Err(_) => anyhow::bail!(
                "notify command did not finish within {}s: killed",
                self.cfg.command_timeout.as_secs_f64()
            ),
        };
        if status.success() {
            return Ok(());
        }
        let said = match stderr {
            Some(mut t) => tokio::time::timeout(Duration::from_millis(200), &mut t.0)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| one_line(&String::from_utf8_lossy(&b), 300))
                .unwrap_or_default(),
            None => String::new(),
        };
        if said.is_empty() {
            anyhow::bail!("notify command exited with {status}")
        }
        anyhow::bail!("notify command exited with {status}: {said}")
    }
}

/// The last bytes a command wrote to stderr.
async fn tail(mut r: tokio::process::ChildStderr) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    const KEEP: usize = 1024;
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    kept
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A command's process group (its id is sh's pid), killed when dropped still armed: on a
/// timeout or a shutdown, whatever the command started ends with it.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .0
            .and_then(|p| i32::try_from(p).ok())
            // Never 1: kill(-1) signals every process we may signal.
            .filter(|p| *p > 1)
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NotifyConfig;

    fn with_command(cmd: &str, timeout: Duration) -> Dispatcher {
        Dispatcher::new(NotifyConfig {
            command: Some(cmd.to_string()),
            command_timeout: timeout,
            ..NotifyConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_command_reads_the_payload_and_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let d = with_command(
            &format!("cat > '{}'", out.display()),
            Duration::from_secs(30),
        );
        d.deliver("id", r#"{"id":"id"}"#).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"id\"}\n");
    }

    #[tokio::test]
    async fn a_failing_command_says_why() {
        let d = with_command(
            "echo 'no route to the printer' >&2; exit 3",
            Duration::from_secs(30),
        );
        let e = format!("{:#}", d.deliver("id", "{}").await.unwrap_err());
        assert!(
            e.contains("exit status: 3") && e.contains("no route to the printer"),
            "{e}"
        );
    }

    /// Whether a process is gone (or a zombie waiting to be reaped: it runs no more).
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_its_timeout_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        // sh stays (it waits), and its child sleeps: both are killed with the group.
        let d = with_command(
            &format!("sleep 600 & echo $! > '{}'; wait", pid.display()),
            Duration::from_millis(500),
        );
        let t = std::time::Instant::now();
        let e = format!("{:#}", d.deliver("id", "{}").await.unwrap_err());
        assert!(e.contains("did not finish within 0.5s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let pid = std::fs::read_to_string(&pid).unwrap();
        let pid = pid.trim();
        let t = std::time::Instant::now();
        while !gone(pid) {
            assert!(t.elapsed() < Duration::from_secs(5), "sleep {pid} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
