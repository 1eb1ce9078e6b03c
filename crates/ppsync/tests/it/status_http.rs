//! The daemon's HTTP endpoint: `/healthz`, `/livez`, `/readyz`, `/status`, `/metrics` (strictly
//! parsed as Prometheus text), the bearer token, and the status page rendered by headless Chromium.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ppsync::config::Config;
use ppsync::resource::RESOURCES;
use ppsync::status::{FleetStatus, Hosts, StatusContext, serve, serve_fleet};
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{TestApp, app, assert_clean};

/// A running endpoint over a test app's mirror.
pub(crate) struct Endpoint {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Endpoint {
    pub(crate) async fn start(app: &TestApp, token: Option<&str>) -> Endpoint {
        let cfg = Config::load(Some(&app.config_path)).expect("config loads");
        let ctx = StatusContext {
            store: app.engine.store.clone(),
            client: app.engine.client.clone(),
            schedule: cfg.daemon().schedule,
            clock: app.engine.clock.clone(),
            token: token.map(SecretString::from),
            hosts: Hosts::from_config(&cfg),
            notify_window: cfg.notify.window,
            deadlines: cfg.sync.deadlines.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, ctx, stop.clone()));
        Endpoint { addr, stop, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String, String) {
        self.get_with(path, None).await
    }

    async fn get_with(&self, path: &str, bearer: Option<&str>) -> (u16, String, String) {
        let mut req = reqwest::Client::new().get(self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.expect("endpoint answers");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ctype, resp.text().await.unwrap())
    }

    /// Cancels the endpoint and checks it stops promptly and cleanly.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("endpoint stops on shutdown")
            .expect("endpoint task")
            .expect("endpoint ends without error");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_status_and_metrics_follow_the_mirror() {
    let app = app(0.01, "").await;
    let ep = Endpoint::start(&app, None).await;

    // A mirror that never synced is behind on every resource.
    let (code, _, body) = ep.get("/healthz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("behind: ") && body.contains("matters") && body.contains("tags_account"),
        "{body}"
    );
    let (_, _, metrics) = ep.get("/metrics").await;
    let before = parse_prometheus(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    assert_eq!(before[r#"ppsync_healthy"#], 0.0);
    assert_eq!(before[r#"ppsync_resource_behind{resource="matters"}"#], 1.0);

    assert_clean(&app.pass().await);

    let (code, _, body) = ep.get("/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    // /status: every resource, with the mirror's own counts.
    let (code, ctype, body) = ep.get("/status").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["healthy"], true);
    let resources = status["resources"].as_array().unwrap();
    assert_eq!(resources.len(), RESOURCES.len());
    assert_eq!(resources.len(), 26);
    let by_name: HashMap<&str, &Value> = resources
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r))
        .collect();
    let mut total_live = 0;
    for res in RESOURCES {
        let r = by_name
            .get(res.name)
            .unwrap_or_else(|| panic!("{} missing from /status", res.name));
        let live = app.mirror(res).await.len() as i64;
        total_live += live;
        assert_eq!(r["live"].as_i64(), Some(live), "{}", res.name);
        assert_eq!(r["deleted"].as_i64(), Some(0), "{}", res.name);
        assert_eq!(r["enabled"], true, "{}", res.name);
        assert_eq!(r["behind"], false, "{}", res.name);
        assert!(r["last_success"].is_string(), "{}: {r}", res.name);
        assert!(r["lag_seconds"].as_i64().unwrap() < 60, "{}: {r}", res.name);
        // A first backfill writes every record it receives.
        assert_eq!(
            r["records_changed_total"].as_i64(),
            Some(live),
            "{}",
            res.name
        );
        assert_eq!(r["last_run"]["resource"], res.name);
        assert!(r["last_run"]["error"].is_null(), "{}: {r}", res.name);
    }
    assert!(total_live > 100, "a seeded firm: {total_live} records");
    assert_eq!(
        status["recent_runs"].as_array().unwrap().len(),
        20,
        "the last 20 runs"
    );
    let requests = status["requests"]["total"].as_u64().unwrap();
    assert_eq!(requests, app.engine.client.requests_made());
    assert!(status["budget"]["limit"].as_u64().unwrap() > 0);
    assert!(status["budget"]["in_window"].as_u64().unwrap() > 0);

    // /metrics: strict Prometheus text, and the same numbers.
    let (code, ctype, metrics) = ep.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let m = parse_prometheus(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    for family in [
        "ppsync_requests_total",
        "ppsync_throttled_total",
        "ppsync_token_refreshes_total",
        "ppsync_budget_limit",
        "ppsync_budget_requests_in_window",
        "ppsync_outbox_depth",
        "ppsync_healthy",
    ] {
        assert!(m.contains_key(family), "{family} missing:\n{metrics}");
    }
    assert!(m["ppsync_requests_total"] >= requests as f64);
    assert_eq!(
        m["ppsync_budget_limit"],
        status["budget"]["limit"].as_f64().unwrap()
    );
    assert_eq!(m["ppsync_healthy"], 1.0);
    for res in RESOURCES {
        let r = by_name[res.name];
        let live = r["live"].as_f64().unwrap();
        let key =
            |family: &str, extra: &str| format!("{family}{{resource=\"{}\"{extra}}}", res.name);
        assert_eq!(
            m.get(&key("ppsync_records", ",state=\"live\"")),
            Some(&live),
            "{}",
            res.name
        );
        assert_eq!(
            m.get(&key("ppsync_records_changed_total", "")),
            Some(&live),
            "{}",
            res.name
        );
        assert!(m[&key("ppsync_lag_seconds", "")] < 60.0);
        let last = m[&key("ppsync_last_success_timestamp_seconds", "")];
        let now = chrono::Utc::now().timestamp() as f64;
        assert!((now - 60.0..=now + 1.0).contains(&last), "{last} vs {now}");
        assert_eq!(m[&key("ppsync_resource_behind", "")], 0.0);
    }

    ep.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_guards_every_route() {
    let app = app(0.01, "").await;
    let ep = Endpoint::start(&app, Some("s3cret-token")).await;
    for path in ["/", "/status", "/healthz", "/livez", "/readyz", "/metrics"] {
        let (code, _, _) = ep.get(path).await;
        assert_eq!(code, 401, "{path} without a token");
        let (code, _, _) = ep.get_with(path, Some("s3cret-tokeX")).await;
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _, _) = ep.get_with(path, Some("s3cret")).await;
        assert_eq!(code, 401, "{path} with a prefix of the token");
        let (code, _, body) = ep.get_with(path, Some("s3cret-token")).await;
        // Nothing synced yet: /healthz says so, past the token check.
        let want = if ["/healthz", "/readyz"].contains(&path) {
            503
        } else {
            200
        };
        assert_eq!(code, want, "{path} with the token: {body}");
    }
    let resp = reqwest::Client::new()
        .get(ep.url("/status"))
        .header("authorization", "Basic czNjcmV0LXRva2Vu")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    ep.stop().await;
}

/// DNS rebinding: a page on evil.example whose name an attacker points at 127.0.0.1 is, to the
/// browser, same-origin with the endpoint. The client below resolves the names it is given to the
/// endpoint's loopback address (nothing leaves loopback), as the rebinding browser would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_name_resolves_to_loopback_gets_nothing() {
    let app = app(0.01, "[http]\nallowed_hosts = [\"status.example\"]").await;
    assert_clean(&app.pass().await);
    let open = Endpoint::start(&app, None).await;
    let guarded = Endpoint::start(&app, Some("s3cret-token")).await;
    let get = async |ep: &Endpoint, host: &str, path: &str, bearer: Option<&str>| {
        let client = reqwest::Client::builder()
            .resolve(host, ep.addr)
            .build()
            .unwrap();
        let mut req = client.get(format!("http://{host}:{}{path}", ep.addr.port()));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.expect("endpoint answers");
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    for path in ["/", "/status", "/healthz", "/livez", "/readyz", "/metrics"] {
        for host in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
        ] {
            let (code, body) = get(&open, host, path, None).await;
            assert_eq!(code, 421, "{host}{path}: {body}");
            assert!(
                body.contains("http.allowed_hosts") && !body.contains("matters"),
                "{host}{path}: no data, the fix named: {body}"
            );
            // With a token the Host is still checked first: even the right token gets nothing.
            let (code, _) = get(&guarded, host, path, Some("s3cret-token")).await;
            assert_eq!(code, 421, "{host}{path} with the token");
        }
        for host in ["localhost", "127.0.0.1", "status.example"] {
            let (code, body) = get(&open, host, path, None).await;
            assert_eq!(code, 200, "{host}{path}: {body}");
            let (code, _) = get(&guarded, host, path, None).await;
            assert_eq!(code, 401, "{host}{path}: the token is still wanted");
        }
    }
    let (_, status) = get(&open, "status.example", "/status", None).await;
    assert!(status.contains("\"matters\""), "{status}");

    // A fleet instance's endpoint checks the same way.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let fleet = FleetStatus {
        instance: "i1".into(),
        firms: Default::default(),
        token: None,
        hosts: Hosts::new(Some(addr), &[]),
    };
    let task = tokio::spawn(serve_fleet(listener, fleet, stop.clone()));
    let fleet_ep = Endpoint { addr, stop, task };
    for path in [
        "/",
        "/status",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/firms/x/status",
    ] {
        let (code, _) = get(&fleet_ep, "evil.example", path, None).await;
        assert_eq!(code, 421, "fleet {path}");
    }
    let (code, body) = get(&fleet_ep, "localhost", "/healthz", None).await;
    assert_eq!((code, body.as_str()), (200, "ok: 0 firms\n"));
    let (code, body) = get(&fleet_ep, "localhost", "/livez", None).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = get(&fleet_ep, "localhost", "/readyz", None).await;
    assert_eq!((code, body.as_str()), (200, "ready: 0 firms\n"));
    fleet_ep.stop().await;
    open.stop().await;
    guarded.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_headless_chromium() {
    let app = app(0.01, "").await;
    assert_clean(&app.pass().await);
    let ep = Endpoint::start(&app, None).await;

    // The page as served: complete, self-contained, and escaped.
    let (code, ctype, html) = ep.get("/").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(!html.contains("<script"), "no script on the page");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );

    let dir = tempfile::tempdir().unwrap();
    let url = ep.url("/");
    let shot = dir.path().join("status.png");
    let (dom, shot) = {
        let dir = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let dom = chromium(&dir, &["--dump-dom".into(), url.clone()]);
            chromium(
                &dir,
                &[
                    format!("--screenshot={}", shot.display()),
                    "--window-size=1280,1400".into(),
                    "--hide-scrollbars".into(),
                    url,
                ],
            );
            (dom, shot)
        })
        .await
        .expect("chromium thread")
    };

    assert!(dom.contains("<title>ppsync status</title>"), "{dom}");
    assert!(
        dom.contains("id=\"budget\"") && dom.contains("Request budget"),
        "{dom}"
    );
    assert!(dom.contains("id=\"health\""), "{dom}");
    for res in RESOURCES {
        let row = format!("<tr class=\"res\" id=\"res-{}\">", res.name);
        assert!(
            dom.contains(&row),
            "{} row missing from the rendered page",
            res.name
        );
    }
    assert!(dom.contains("id=\"runs\""), "{dom}");
    assert!(dom.contains("id=\"deadlines\""), "{dom}");

    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a rendered page, not a blank one: {} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("STATUS_PAGE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    ep.stop().await;
}

/// Runs headless Chromium with `args` (a fresh profile in `dir`), bounded by a timeout; returns
/// its stdout. Fails, never skips, when Chromium is not installed.
fn chromium(dir: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let out_path = dir.join(format!("chromium-{}.out", rand_suffix()));
    let err_path = out_path.with_extension("err");
    let mut child = match std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`chromium` is not installed: run ./scripts/test.sh (it installs Debian's chromium package), \
             or apt-get install chromium"
        ),
        Err(e) => panic!("cannot start chromium: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 90 s: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    std::fs::read_to_string(&out_path).unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A strict reader of the Prometheus text exposition format (0.0.4), for what ppsync writes:
/// every family announces HELP and TYPE before its samples, its samples are contiguous, every
/// sample is `name{labels} value`, names and label names are well formed, label values use only
/// the format's escapes, values parse as floats, and no series repeats. Returns each series
/// (`name{k="v",...}` as written, escapes undone) with its value.
pub fn parse_prometheus(text: &str) -> Result<BTreeMap<String, f64>, String> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
        let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        chars.next().is_some_and(ok_first) && chars.all(ok_rest)
    }
    let mut help: HashSet<String> = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut series = BTreeMap::new();
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            match parts.next() {
                Some("HELP") => {
                    let name = parts
                        .next()
                        .ok_or(format!("line {n}: HELP without a name"))?;
                    if !is_name(name, true) {
                        return Err(format!("line {n}: bad metric name {name:?}"));
                    }
                    let doc = parts.next().unwrap_or("");
                    let mut chars = doc.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                            return Err(format!("line {n}: bad escape in HELP"));
                        }
                    }
                    if !help.insert(name.to_string()) {
                        return Err(format!("line {n}: second HELP for {name}"));
                    }
                }
                Some("TYPE") => {
                    let name = parts
                        .next()
                        .ok_or(format!("line {n}: TYPE without a name"))?;
                    let kind = parts.next().unwrap_or("");
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(format!("line {n}: bad TYPE {kind:?}"));
                    }
                    if series.keys().any(|k: &String| family_of(k) == name) {
                        return Err(format!("line {n}: TYPE for {name} after its samples"));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(format!("line {n}: second TYPE for {name}"));
                    }
                }
                _ => {} // a plain comment
            }
            continue;
        }
        // name{labels} value [timestamp]
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("line {n}: no value: {line:?}"))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(format!("line {n}: bad metric name {name:?}"));
        }
        if !help.contains(name) || !types.contains_key(name) {
            return Err(format!(
                "line {n}: {name} has samples before its HELP and TYPE"
            ));
        }
        if current.as_deref() != Some(name) {
            if finished.iter().any(|f| f == name) {
                return Err(format!("line {n}: samples of {name} are not contiguous"));
            }
            if let Some(c) = current.take() {
                finished.push(c);
            }
            current = Some(name.to_string());
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let close;
            loop {
                // label name
                let start = chars
                    .peek()
                    .map(|(i, _)| *i)
                    .ok_or(format!("line {n}: open labels"))?;
                if body[start..].starts_with('}') {
                    close = start;
                    break;
                }
                let eq = body[start..]
                    .find('=')
                    .ok_or(format!("line {n}: label without '='"))?
                    + start;
                let lname = &body[start..eq];
                if !is_name(lname, false) {
                    return Err(format!("line {n}: bad label name {lname:?}"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(format!("line {n}: label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("line {n}: unterminated label value")),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(format!("line {n}: bad escape in a label value")),
                        },
                        Some((_, '\n')) => return Err(format!("line {n}: raw newline")),
                        Some((_, c)) => value.push(c),
                    }
                }
                if labels.iter().any(|(k, _): &(String, String)| k == lname) {
                    return Err(format!("line {n}: label {lname} repeated"));
                }
                labels.push((lname.to_string(), value));
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        close = i;
                        break;
                    }
                    other => return Err(format!("line {n}: unexpected {other:?} after a label")),
                }
            }
            rest = &body[close + 1..];
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or(format!("line {n}: no space before the value"))?;
        let mut fields = rest.split(' ');
        let value = fields.next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .map_err(|_| format!("line {n}: value {v:?} is not a float"))?,
        };
        if let Some(ts) = fields.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(format!("line {n}: bad timestamp {ts:?}"));
        }
        if fields.next().is_some() {
            return Err(format!("line {n}: trailing fields"));
        }
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{name}{{{}}}", l.join(","))
        };
        if series.insert(key.clone(), value).is_some() {
            return Err(format!("line {n}: series {key} repeated"));
        }
    }
    if series.is_empty() {
        return Err("no samples".into());
    }
    Ok(series)
}

fn family_of(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

#[test]
fn the_prometheus_reader_is_strict() {
    let ok = "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n\
              # HELP b Gauge \\\\ with escapes\\n.\n# TYPE b gauge\nb{x=\"q\\\"\\\\\\n\",y=\"2\"} 1.5\nb{x=\"z\"} NaN\n";
    let m = parse_prometheus(ok).unwrap();
    assert_eq!(m["a_total"], 3.0);
    assert_eq!(m["b{x=\"q\"\\\n\",y=\"2\"}"], 1.5);
    for bad in [
        "a 1\n",                                        // no HELP/TYPE
        "# HELP a x\na 1\n",                            // no TYPE
        "# HELP a x\n# TYPE a gauge\na one\n",          // not a float
        "# HELP a x\n# TYPE a gauge\na{1x=\"v\"} 1\n",  // bad label name
        "# HELP a x\n# TYPE a gauge\na{x=v} 1\n",       // unquoted
        "# HELP a x\n# TYPE a gauge\na{x=\"\\t\"} 1\n", // bad escape
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",       // repeated series
        "# HELP 9a x\n# TYPE 9a gauge\n9a 1\n",         // bad name
        "# HELP a x\n# TYPE a gauge\n# HELP b y\n# TYPE b gauge\na 1\nb 1\na{l=\"1\"} 1\n", // split
        "# HELP a x\n# TYPE a gauge\na 1",              // no final newline
        "# HELP a x\n# TYPE a gauge\na  1\n",           // double space
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_that_cannot_be_listed_whole_is_named_everywhere() {
    // $skip ignored under a cap of 50: /contacts (no updated_at to page by) cannot be listed.
    let sim = crate::support::sim(0.02).await;
    sim.set_dialect(
        None,
        ppsim::DialectPatch {
            page_cap: Some(Some(50)),
            skip: Some(ppsim::Opt::Ignore),
            ..Default::default()
        },
    )
    .unwrap();
    let app = crate::support::app_with(sim, "").await;
    let report = app.pass().await;
    let contacts = report
        .outcomes
        .iter()
        .find(|o| o.resource == "contacts")
        .unwrap();
    assert!(contacts.incomplete, "{:?}", contacts.error);
    assert_eq!(report.exit_code(), 1);
    let ep = Endpoint::start(&app, None).await;

    let (code, _, body) = ep.get("/healthz").await;
    assert_eq!(code, 503);
    assert_eq!(body, "incomplete: contacts (see /status)\n");
    // Not a readiness matter: what the mirror holds is current.
    let (code, _, body) = ep.get("/readyz").await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    let (_, _, body) = ep.get("/status").await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["healthy"], false);
    assert_eq!(status["incomplete"], serde_json::json!(["contacts"]));
    let row = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "contacts")
        .unwrap();
    let why = row["incomplete"].as_str().unwrap();
    assert!(why.contains("more exist"), "{why}");
    assert_eq!(row["dialect"]["skip"]["value"], "ignored", "{row}");
    let matters = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "matters")
        .unwrap();
    assert!(matters["incomplete"].is_null());
    assert_eq!(matters["dialect"]["cap"]["value"], 50);

    let (_, _, metrics) = ep.get("/metrics").await;
    let m = parse_prometheus(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    assert_eq!(m[r#"ppsync_resource_incomplete{resource="contacts"}"#], 1.0);
    assert_eq!(m[r#"ppsync_resource_incomplete{resource="matters"}"#], 0.0);
    assert_eq!(m[r#"ppsync_endpoint_page_cap{resource="matters"}"#], 50.0);
    assert_eq!(m["ppsync_healthy"], 0.0);

    let (_, _, page) = ep.get("/").await;
    assert!(
        page.contains("incomplete: contacts"),
        "the page's health pill"
    );
    assert!(page.contains("<span class=\"pill bad\">incomplete</span>"));

    // The CLI says so too.
    let (code, out, _) = app.cli(&["status"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("INCOMPLETE contacts: "), "{out}");
    ep.stop().await;
}

#[tokio::test]
async fn dead_notifications_are_counted_and_listed_everywhere() {
    let app = app(0.005, "").await;
    let store = &app.engine.store;
    let now = chrono::Utc::now();
    let item = |id: &str| ppsync::store::Notification {
        id: id.to_string(),
        kind: "task.created".into(),
        resource: "tasks".into(),
        record_id: id.to_string(),
        payload: serde_json::json!({ "id": id }),
        suppressed: false,
    };
    let mut tx = store.begin().await.unwrap();
    tx.enqueue(
        &[item("task.created:gone-bad"), item("task.created:waiting")],
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    store
        .outbox_dead(
            "task.created:gone-bad",
            "webhook answered 422 <Unprocessable>",
        )
        .await
        .unwrap();
    let ep = Endpoint::start(&app, None).await;

    let (code, _, body) = ep.get("/status").await;
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["outbox_dead"], 1);
    assert_eq!(status["outbox_pending"], 1);
    assert_eq!(status["dead"][0]["id"], "task.created:gone-bad");
    assert_eq!(status["dead"][0]["attempts"], 1);

    let (_, _, metrics) = ep.get("/metrics").await;
    let m = parse_prometheus(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    assert_eq!(m["ppsync_outbox_dead"], 1.0);
    assert_eq!(m["ppsync_outbox_depth"], 1.0);

    let (_, _, page) = ep.get("/").await;
    assert!(page.contains("Outbox dead"), "{page}");
    assert!(page.contains("<table id=\"dead\">"), "{page}");
    assert!(page.contains("task.created:gone-bad"));
    assert!(
        page.contains("webhook answered 422 &lt;Unprocessable&gt;"),
        "escaped"
    );
    ep.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_every_first_backfill_and_turns_away_when_behind() {
    let sim = crate::support::sim(0.01).await;
    let app = crate::support::app_on_sim_clock(sim, "").await;
    let ep = Endpoint::start(&app, None).await;
    let (code, _, body) = ep.get("/livez").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _, body) = ep.get("/readyz").await;
    assert_eq!(code, 503);
    assert!(
        body.starts_with("first backfill not finished: matters, ") && !body.contains("behind"),
        "{body}"
    );

    // Two of 26 backfilled: the other 24 are named, these two are not.
    assert_clean(&app.pass_of(&["matters", "tasks"], false).await);
    let (code, _, body) = ep.get("/readyz").await;
    assert_eq!(code, 503);
    let waiting = body
        .strip_prefix("first backfill not finished: ")
        .unwrap_or_else(|| panic!("{body}"))
        .trim_end()
        .split(", ")
        .collect::<Vec<_>>();
    assert_eq!(waiting.len(), RESOURCES.len() - 2, "{body}");
    assert!(!waiting.contains(&"matters") && !waiting.contains(&"tasks"));

    assert_clean(&app.pass().await);
    let (code, _, body) = ep.get("/readyz").await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    // A day with nothing synced: every resource of the fast tiers is behind (the daily ones not
    // yet: twice their interval has not passed).
    app.advance(Duration::from_secs(86_400));
    let (code, _, body) = ep.get("/readyz").await;
    assert_eq!(code, 503);
    assert!(body.starts_with("behind: matters, "), "{body}");
    assert!(!body.contains("first backfill"), "{body}");
    let (code, _, body) = ep.get("/livez").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"), "alive all the same");

    // Caught up again, then the grant is revoked: not ready, and saying why first.
    assert_clean(&app.pass().await);
    let (code, _, _) = ep.get("/readyz").await;
    assert_eq!(code, 200);
    app.sim.faults().revoke_all();
    assert!(app.pass_of(&["matters"], false).await.auth_failed);
    let (code, _, body) = ep.get("/readyz").await;
    assert_eq!(code, 503);
    assert!(
        body.starts_with("auth_failed since ") && body.contains("ppsync auth login"),
        "{body}"
    );
    ep.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_the_build_and_count_each_resources_failures_and_durations() {
    // One try a request: one HTML error page skips the matters run; then a clean pass.
    let app = app(0.01, "[sync]\nmax_attempts = 1").await;
    app.sim.faults().add(ppsim::Fault::HtmlError {
        count: 1,
        status: 502,
    });
    let report = app.pass_of(&["matters"], false).await;
    app.sim.faults().clear();
    assert!(
        report.outcomes[0].error.is_some(),
        "matters was skipped: {:?}",
        report.outcomes
    );
    assert_clean(&app.pass().await);
    let ep = Endpoint::start(&app, None).await;
    let (_, _, metrics) = ep.get("/metrics").await;
    let m = parse_prometheus(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    let version = env!("CARGO_PKG_VERSION");
    let build = m
        .iter()
        .find(|(k, _)| k.starts_with("ppsync_build_info{"))
        .unwrap_or_else(|| panic!("no build_info:\n{metrics}"));
    assert!(
        build.0.contains(&format!("version=\"{version}\"")),
        "{}",
        build.0
    );
    assert_eq!(*build.1, 1.0);
    assert_eq!(m[r#"ppsync_run_failures_total{resource="matters"}"#], 1.0);
    let (_, _, status) = ep.get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    for r in status["resources"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let failures = m[&format!("ppsync_run_failures_total{{resource=\"{name}\"}}")];
        assert_eq!(failures, r["failures_total"].as_f64().unwrap(), "{name}");
        if name != "matters" {
            assert_eq!(failures, 0.0, "{name}");
        }
        // The latest run's duration, as its start and end in the run history say.
        let run = &r["last_run"];
        let took = chrono::DateTime::parse_from_rfc3339(run["finished_at"].as_str().unwrap())
            .unwrap()
            - chrono::DateTime::parse_from_rfc3339(run["started_at"].as_str().unwrap()).unwrap();
        let d = m[&format!("ppsync_last_run_duration_seconds{{resource=\"{name}\"}}")];
        assert!(
            (d - took.num_milliseconds() as f64 / 1000.0).abs() < 0.002 && d < 60.0,
            "{name}: {d} vs {took:?}"
        );
    }
    ep.stop().await;
}
