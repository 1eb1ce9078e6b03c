//! How the binary logs: `PPSYNC_LOG_FORMAT=json` makes every line JSON (the start-up lines
//! included), `NO_COLOR` keeps colours off a terminal, and a bad format is refused at once. The
//! daemon here also answers `/livez`, `/readyz` and `ppsync health` as an orchestrator would ask.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ppsync::resource::RESOURCES;

use crate::support::*;

/// A free loopback port (bound then released: the daemon binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it yields, for at most `limit`.
async fn wait_for<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_daemon_logs_only_json_and_answers_its_probes() {
    let port = free_port();
    let mut extra = format!("[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"probe-s3cret\"\n");
    for r in RESOURCES {
        if !["matters", "accounts", "tasks"].contains(&r.name) {
            extra.push_str(&format!("[resources.{}]\nenabled = false\n", r.name));
        }
    }
    let app = app(0.01, &extra).await;
    let log = app._dir.path().join("daemon.log");
    let mut daemon = Running(Some(
        ppsync_cmd(&app.config_path)
            .arg("run")
            .env("PPSYNC_LOG_FORMAT", "json")
            .env_remove("PPSYNC_LOG")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("ppsync run starts"),
    ));
    let client = reqwest::Client::new();
    let get = async |path: &str| {
        let resp = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth("probe-s3cret")
            .send()
            .await
            .ok()?;
        Some((resp.status().as_u16(), resp.text().await.ok()?))
    };
    let (code, body) = wait_for(Duration::from_secs(30), "/livez", async || {
        get("/livez").await
    })
    .await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    // The daemon backfills its three resources; /readyz turns 200 once all three are done.
    let body = wait_for(
        Duration::from_secs(60),
        "/readyz 200",
        async || match get("/readyz").await? {
            (200, body) => Some(body),
            (503, body) => {
                assert!(body.starts_with("first backfill not finished: "), "{body}");
                None
            }
            other => panic!("/readyz: {other:?}"),
        },
    )
    .await;
    assert_eq!(body, "ready\n");
    // `ppsync health` finds the endpoint and its token in the config.
    for (route, want) in [("/livez", "200 ok\n"), ("/readyz", "200 ready\n")] {
        let (code, out, err) = app.cli(&["health", "--route", route]).await;
        assert_eq!((code, out.as_str()), (0, want), "{err}");
    }
    let (code, _, err) = app.cli(&["health", "--route", "/status"]).await;
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: --route \"/status\" is not a health route"),
        "{err}"
    );

    let child = daemon.0.take().unwrap();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap().status)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let stderr = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let said = |text: &str| {
        lines.iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
    };
    assert!(
        said(&format!("status on http://127.0.0.1:{port}/")),
        "{stderr}"
    );
    assert!(said("shutdown requested"), "{stderr}");
    assert!(
        !stderr.contains("probe-s3cret"),
        "the token stays out of the log"
    );

    // Nothing listens now: the probe fails, naming the fix.
    let (code, out, err) = app.cli(&["health"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("does not answer: is `ppsync run` running?"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_log_format_is_refused_before_anything_runs() {
    let app = app(0.01, "").await;
    app.sim.clear_journal();
    let out = ppsync_cmd(&app.config_path)
        .arg("sync")
        .env("PPSYNC_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        err,
        "error: PPSYNC_LOG_FORMAT=\"xml\" is not a log format: set it to json or text, or unset it\n"
    );
    assert!(app.sim.journal().is_empty(), "no request was made");
}

/// Runs `ppsync status` on a pseudo-terminal (util-linux `script`), logging at debug, and returns
/// what the terminal showed.
fn on_a_terminal(config: &std::path::Path, no_color: Option<&str>) -> Option<String> {
    let bin = env!("CARGO_BIN_EXE_ppsync");
    let line = format!("{bin} --config '{}' status", config.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env("PPSYNC_LOG", "debug")
        .env_remove("PPSYNC_LOG_FORMAT")
        .stdin(Stdio::null());
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let out = cmd.output().ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_turns_colours_off_on_a_terminal() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    let config = app.config_path.clone();
    let shown = tokio::task::spawn_blocking(move || {
        (
            on_a_terminal(&config, None),
            on_a_terminal(&config, Some("1")),
        )
    })
    .await
    .unwrap();
    let (Some(coloured), Some(plain)) = shown else {
        eprintln!("util-linux `script` is not installed: NO_COLOR was not checked on a terminal");
        return;
    };
    // SGR sequences: ESC [ ... m. Both runs logged (sqlx's statements at debug) and printed.
    assert!(
        coloured.contains("DEBUG") && plain.contains("DEBUG"),
        "{plain}"
    );
    assert!(
        coloured.contains("\x1b["),
        "a terminal gets colours: {coloured}"
    );
    assert!(!plain.contains("\x1b["), "NO_COLOR: none: {plain}");
    assert!(
        plain.contains("matters"),
        "the status table still prints: {plain}"
    );
}
