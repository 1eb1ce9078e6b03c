use crate::support::*;

#[tokio::test]
async fn sync_then_export_from_the_cli_equals_truth() {
    let app = app(0.01, "").await;
    let (code, out, err) = app.cli(&["sync"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pass 1: 26 resources"), "{out}");
    let (code, out, _) = app.cli(&["export", "matters"]).await;
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let matters = ppsync::resource::find("matters").unwrap();
    assert_eq!(
        lines,
        app.truth(matters),
        "export is sorted by id and equal to the truth"
    );
    let (code, out, _) = app.cli(&["export", "call_logs", "--format", "csv"]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "\"id\",\"created_at\",\"updated_at\",\"deleted_at\",\"account_id\",\"matter_id\",\"subject\",\"date\",\"data\"\n"
        ),
        "{out}"
    );
    let (code, out, _) = app.cli(&["status", "--json"]).await;
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["resources"].as_array().unwrap().len(), 26);
    let (code, out, _) = app.cli(&["report"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("a full pull of the 26 enabled resources now"),
        "{out}"
    );
    // The table's counts line up under their headers.
    let (code, out, _) = app.cli(&["status"]).await;
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    let end = header.find("records").unwrap() + "records".len();
    let row = lines.find(|l| l.starts_with("matters ")).unwrap();
    let n = app.truth(matters).len().to_string();
    assert_eq!(&row[end - n.len()..end], n, "{out}");

    // A reader that stops early (`ppsync export matters | head`): a quiet, successful end.
    for args in [
        &["export", "accounts"][..],
        &["export", "accounts", "--format", "csv"],
        &["status"],
        &["report"],
    ] {
        let config = app.config_path.clone();
        let (code, stderr) = tokio::task::spawn_blocking(move || {
            let mut child = ppsync_cmd(&config)
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take()); // closed before the first write
            let out = child.wait_with_output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[tokio::test]
async fn auth_login_catches_the_redirect_on_loopback_and_paste_works_too() {
    let sim = sim(0.01).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &sim,
        &format!("redirect_uri = \"http://127.0.0.1:{port}/callback\""),
    );
    let (code, _, err) = run_cli(&config, &["auth", "status"]);
    assert_eq!(code, 2, "no credentials yet: {err}");
    assert!(err.contains("ppsync auth login"), "{err}");

    let cfg2 = config.clone();
    let child = tokio::task::spawn_blocking(move || {
        ppsync_cmd(&cfg2)
            .args(["auth", "login"])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    })
    .await
    .unwrap();
    // Read the authorize URL it prints, then "open" it: ppsim consents and redirects to the loopback.
    let (child, url) = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, BufReader};
        let mut child = child;
        let stderr = child.stderr.take().unwrap();
        let mut url = None;
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(u) = line.trim().strip_prefix("http") {
                url = Some(format!("http{u}"));
                break;
            }
        }
        // Keep draining stderr so the child never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        (child, url.expect("the authorize URL is printed"))
    })
    .await
    .unwrap();
    assert!(
        url.contains("/oauth/authorize?response_type=code") && url.contains("state="),
        "{url}"
    );
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(page.contains("authorized"), "{page}");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out, _) = run_cli_async(&config, &["auth", "status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("credentials stored"), "{out}");
    let (code, out, err) = run_cli_async(&config, &["sync", "--resource", "users"]).await;
    assert_eq!(code, 0, "{out}{err}");

    // --paste: the code from a redirect the user copies by hand.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri=http://127.0.0.1:{port}/callback&state=s1",
        sim.url(),
        sim.client_id()
    );
    let resp = client.get(&authorize).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let code_param = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .unwrap();
    let cfg3 = config.clone();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = ppsync_cmd(&cfg3)
            .args(["auth", "login", "--paste"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{code_param}").unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn init_writes_a_loadable_annotated_config_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ppsync.toml");
    let (code, out, err) = run_cli_async(&path, &["init"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("overlap = \"15m\"") && text.contains("# "));
    let (code, _, err) = run_cli_async(&path, &["init"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert!(ppsync::config::Config::load(Some(&path)).is_ok());
}

#[tokio::test]
async fn deadlines_lists_open_tasks_and_events_from_the_mirror() {
    let app = app(0.02, "").await;
    assert_clean(&app.pass().await);
    // The simulator's firm lives around its own clock; look far enough ahead from ours.
    let (code, out, err) = app.cli(&["deadlines", "--days", "3650", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(list.len() > 5, "{} deadlines", list.len());
    assert!(list.iter().any(|d| d["kind"] == "Task") && list.iter().any(|d| d["kind"] == "Event"));
    assert!(list.iter().all(|d| d["status"] != "Completed"));
    let dues: Vec<&str> = list.iter().map(|d| d["due"].as_str().unwrap()).collect();
    assert!(dues.windows(2).all(|w| w[0] <= w[1]), "soonest first");
}
