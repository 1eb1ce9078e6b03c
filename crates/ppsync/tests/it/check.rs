//! `ppsync check`, config-relative paths, misspelt keys, and read-only commands that never create
//! a mirror (issue 19).

use std::path::Path;

use crate::support::*;

/// Requests in the firm's ledger (SQLite: the sidecar file; PostgreSQL: the schema's table).
async fn ledger_rows(store: &ppsync::store::Store) -> i64 {
    match store.path() {
        Some(p) => {
            let conn = rusqlite::Connection::open(ppsync::store::ledger_file(p)).unwrap();
            conn.query_row("SELECT COUNT(*) FROM request_ledger", [], |r| r.get(0))
                .unwrap()
        }
        None => count(store, "SELECT COUNT(*) FROM request_ledger").await,
    }
}

async fn cli_in(
    cwd: &Path,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let (cwd, config) = (cwd.to_path_buf(), config.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = ppsync_cmd(&config)
            .args(&args)
            .current_dir(&cwd)
            .envs(env)
            .env_remove("PPSYNC_LOG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_ready_set_up_with_one_counted_request_and_no_secret_shown() {
    // A webhook host that records what it is sent: the check connects, and sends nothing.
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    // Each connection's bytes, once the peer has closed it.
    let (sent, mut received) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let acceptor = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        loop {
            let (mut s, _) = hook.accept().await.unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            let _ = sent.send(buf);
        }
    });
    let app = app(
        0.005,
        &format!(
            "[notify]\nwebhook_url = \"http://127.0.0.1:{hook_port}/hooks/whpath-s3cret\"\nwebhook_secret = \"whsec_c2VjcmV0LXNpZ25pbmcta2V5\"\ncommand = \"cat > /dev/null --token cmd-s3cret\"\nsmtp_url = \"smtp://127.0.0.1:{hook_port}\"\nsmtp_username = \"u\"\nsmtp_password = \"smtp-s3cret\"\nemail_from = \"ppsync@firm.example\"\nemail_to = \"ops@firm.example\"\n"
        ),
    )
    .await;
    let before = ledger_rows(&app.engine.store).await;
    app.sim.clear_journal();
    let (code, out, err) = app.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}{err}");
    for name in [
        "config",
        "database",
        "credentials",
        "webhook",
        "command",
        "smtp",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok   ") && l.contains(&format!(" {name} "))),
            "{name} passes: {out}"
        );
    }
    assert!(out.contains("migrations current"), "{out}");
    let api = app.api_requests();
    assert_eq!(api.len(), 1, "one API request: {api:#?}");
    assert_eq!(api[0].path, "/api/v2/users/me");
    assert_eq!(
        ledger_rows(&app.engine.store).await - before,
        1,
        "counted in the ledger"
    );
    // The webhook's host and the SMTP server (one listener here): connected to, nothing sent.
    for _ in 0..2 {
        let bytes = received.recv().await.expect("the check connected");
        assert!(
            bytes.is_empty(),
            "nothing sent to the webhook or the SMTP server"
        );
    }
    // The settings in force, secrets hidden.
    assert!(out.contains("client_secret = \"(hidden)\""), "{out}");
    for secret in [
        app.sim.client_secret().as_str(),
        "whpath-s3cret",
        "whsec_c2VjcmV0",
        "cmd-s3cret",
        "smtp-s3cret",
    ] {
        assert!(!out.contains(secret), "{secret} shown: {out}");
    }
    let (code, out, _) = app.cli(&["check", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], true);
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "database",
            "credentials",
            "webhook",
            "command",
            "smtp"
        ]
    );
    assert_eq!(doc["config"]["notify"]["webhook_secret"], "(hidden)");
    for _ in 0..2 {
        let bytes = received.recv().await.expect("connected again");
        assert!(bytes.is_empty(), "nothing sent");
    }
    acceptor.abort();
    assert!(received.try_recv().is_err(), "two connections a check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_run_name_what_fails_and_create_nothing() {
    let sim = sim(0.005).await;
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = write_config(
        dir.path(),
        &sim,
        &format!(
            "[notify]\nwebhook_url = \"http://127.0.0.1:{closed_port}/h\"\ncommand = \"/nonexistent/notify.sh\"\n[http]\nlisten = \"off\"\n"
        ),
    );
    let (code, out, err) = run_cli_async(&config, &["check"]).await;
    assert_eq!(code, 2, "{out}{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name}: {out}"))
            .to_string()
    };
    assert!(line("database").starts_with("ok   "), "{out}");
    assert!(line("database").contains("not created yet"), "{out}");
    assert!(
        line("credentials").starts_with("FAIL")
            && line("credentials").contains("ppsync auth login")
    );
    assert!(line("webhook").starts_with("FAIL") && line("webhook").contains("cannot connect"));
    assert!(line("command").starts_with("FAIL") && line("command").contains("does not exist"));
    assert!(sim.journal().is_empty(), "no request without credentials");
    if ppsync::store::testing::postgres_selected() {
        let cfg = ppsync::config::Config::load(Some(&config)).unwrap();
        let (db, seen) = ppsync::check::database(&cfg).await;
        assert!(db.ok && !seen.unwrap().exists, "no schema made: {db:?}");
    } else {
        assert!(!dir.path().join("mirror.db").exists(), "no mirror made");
    }
    // `ppsync run` makes the same checks: the command is missing for good, so it stops; the
    // webhook's outage alone would not stop it.
    let (code, _, err) = run_cli_async(&config, &["run"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("check command: /nonexistent/notify.sh: does not exist"),
        "{err}"
    );
    assert!(
        err.contains("check webhook") && err.contains("starting anyway"),
        "{err}"
    );
    assert!(err.contains("not starting"), "{err}");

    // A revoked grant fails the credentials check for good.
    let app = app_with(sim.clone(), "").await;
    app.sim.faults().revoke_all();
    let (code, out, _) = app.cli(&["check"]).await;
    assert_eq!(code, 2, "{out}");
    let cred = out.lines().find(|l| l.contains(" credentials ")).unwrap();
    assert!(
        cred.starts_with("FAIL") && cred.contains("ppsync auth login"),
        "{out}"
    );
}

#[tokio::test]
async fn a_misspelt_key_is_named_with_its_file_and_the_nearest_key() {
    let sim = sim(0.005).await;
    let dir = tempfile::tempdir().unwrap();
    for (extra, wrong, near) in [
        (
            "[sync]\noverlapp = \"1m\"",
            "`sync.overlapp`",
            "`sync.overlap`",
        ),
        (
            "[deadlines]\nlead_dayz = [1]",
            "`deadlines.lead_dayz`",
            "`deadlines.lead_days`",
        ),
        (
            "[notify]\nwebhok_url = \"http://x\"",
            "`notify.webhok_url`",
            "`notify.webhook_url`",
        ),
        (
            "databse_schema = \"x\"",
            "`databse_schema`",
            "`database_schema`",
        ),
    ] {
        let config = write_config(dir.path(), &sim, extra);
        let (code, out, err) = run_cli_async(&config, &["status"]).await;
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("{wrong} in {}", config.display())),
            "{err}"
        );
        assert!(err.contains(&format!("did you mean {near}?")), "{err}");
        let (code, out, _) = run_cli_async(&config, &["check"]).await;
        assert_eq!(code, 2);
        assert!(
            out.starts_with("FAIL config") && out.contains(near),
            "{out}"
        );
    }
    let config = write_config(dir.path(), &sim, "");
    let (code, _, err) = cli_in(
        dir.path(),
        &config,
        &["status"],
        &[("PPSYNC_NOTIFY__WIDOW", "1d")],
    )
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains("PPSYNC_NOTIFY__WIDOW (environment) is not a config key: did you mean PPSYNC_NOTIFY__WINDOW?"),
        "{err}"
    );
    let (code, _, err) = run_cli_async(
        &config,
        &[
            "firm",
            "add",
            "acme",
            "--client-id",
            "i",
            "--client-secret",
            "s",
            "--set",
            "notify.widow=1d",
        ],
    )
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "firm acme: `notify.widow` is not a config key: did you mean `notify.window`?"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn read_only_commands_never_create_a_mirror() {
    let sim = sim(0.005).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["export", "matters"],
        &["report"],
        &["deadlines"],
        &["notify", "retry", "--all"],
        &["firm", "list"],
        &["tap"],
    ] {
        let (code, out, err) = run_cli_async(&config, args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("no mirror at ") && err.contains("run `ppsync sync` first"),
            "{args:?}: {err}"
        );
    }
    // Asking for credentials before any login: the login is the next step, not a sync.
    let (code, _, err) = run_cli_async(&config, &["auth", "status"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("no credentials stored (no mirror yet)") && err.contains("ppsync auth login"),
        "{err}"
    );
    if ppsync::store::testing::postgres_selected() {
        let cfg = ppsync::config::Config::load(Some(&config)).unwrap();
        let (_, seen) = ppsync::check::database(&cfg).await;
        assert!(!seen.unwrap().exists, "no schema made");
    } else {
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, ["ppsync.toml"], "nothing left behind");
    }
    // `sync` creates it; then they read it.
    let app = app_with(sim, "").await;
    let (code, out, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = app.cli(&["status"]).await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_relative_database_url_follows_the_config_file_not_the_working_directory() {
    if ppsync::store::testing::postgres_selected() {
        return; // SQLite paths only
    }
    let app = app(0.005, "").await;
    assert_clean(&app.pass().await);
    let dir = app.config_path.parent().unwrap();
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let absolute = dir.join("mirror.db").display().to_string();
    let relative = text.replace(&format!("{absolute:?}"), "\"mirror.db\"");
    assert_ne!(relative, text);
    std::fs::write(&app.config_path, relative).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, out, err) = cli_in(
        elsewhere.path(),
        &app.config_path,
        &["status", "--json"],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let matters = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "matters")
        .unwrap_or_else(|| panic!("{status:#}"))
        .clone();
    let truth = app.truth(ppsync::resource::find("matters").unwrap()).len();
    assert!(truth > 0);
    assert_eq!(
        matters["live"], truth as i64,
        "the mirror's matters: {matters}"
    );
    assert!(!elsewhere.path().join("mirror.db").exists());
    // From the environment, a relative path is the working directory's.
    let (code, _, err) = cli_in(
        elsewhere.path(),
        &app.config_path,
        &["status"],
        &[("PPSYNC_DATABASE_URL", "mirror.db")],
    )
    .await;
    assert_eq!(code, 2);
    let want = std::path::absolute(elsewhere.path().join("mirror.db")).unwrap();
    assert!(
        err.contains(&format!("no mirror at {}", want.display())),
        "{err}"
    );
    assert!(!want.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_through_a_network_failure_and_stops_for_a_revoked_grant() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut extra = format!(
        "[notify]\nwebhook_url = \"http://127.0.0.1:{closed_port}/h\"\n[http]\nlisten = \"off\"\n"
    );
    for r in ppsync::resource::RESOURCES {
        if r.name != "matters" {
            extra.push_str(&format!("[resources.{}]\nenabled = false\n", r.name));
        }
    }
    let app = app(0.005, &extra).await;
    let log = app._dir.path().join("daemon.log");
    let mut daemon = Running(Some(
        ppsync_cmd(&app.config_path)
            .arg("run")
            .env("PPSYNC_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("daemon started")
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the daemon starts: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("check webhook: http://127.0.0.1") && text.contains("starting anyway"),
        "{text}"
    );
    let mut child = daemon.0.take().unwrap();
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // A grant revoked at PracticePanther: no use starting, the operator must log in again.
    app.sim.faults().revoke_all();
    app.sim.clear_journal();
    let (code, _, err) = app.cli(&["run"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("check credentials:") && err.contains("ppsync auth login"),
        "{err}"
    );
    assert!(err.contains("not starting"), "{err}");
    let api = app.api_requests();
    assert!(
        api.iter().all(|e| e.path == "/api/v2/users/me"),
        "nothing listed: {api:#?}"
    );
}
