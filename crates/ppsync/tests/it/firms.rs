//! Many firms in one database: `ppsync firm add/list/remove` and `--firm` on every command, each
//! firm with its own credentials, tokens, settings and mirror (a PostgreSQL schema or a SQLite file).

use ppsim::{Sim, SimConfig};

use crate::support::*;

#[tokio::test]
async fn firms_are_registered_synced_and_exported_apart() {
    let sim = Sim::spawn(SimConfig {
        scale: 0.005,
        firms: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "");
    let cli = |args: Vec<String>| {
        let config = config.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli_async(&config, &args).await
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let (alpha, beta) = (sim.firm(0), sim.firm(1));
    for (name, f, extra) in [
        ("alpha", &alpha, "budget.requests=250"),
        ("beta", &beta, "schedule.high=30m"),
    ] {
        let (code, out, err) = cli(s(&[
            "firm",
            "add",
            name,
            "--client-id",
            &f.client_id(),
            "--client-secret",
            &f.client_secret(),
            "--set",
            extra,
        ]))
        .await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("ppsync --firm {name} auth login")),
            "{out}"
        );
    }

    // Bad input: one line, exit 2, nothing registered.
    for (args, needles) in [
        (
            s(&[
                "firm",
                "add",
                "alpha",
                "--client-id",
                "x",
                "--client-secret",
                "y",
            ]),
            vec!["already registered", "firm remove alpha"],
        ),
        (
            s(&[
                "firm",
                "add",
                "Bad-Name",
                "--client-id",
                "x",
                "--client-secret",
                "y",
            ]),
            vec!["Bad-Name", "lowercase"],
        ),
        (
            s(&[
                "firm",
                "add",
                "public_secrets",
                "--client-id",
                "x",
                "--client-secret",
                "y",
            ]),
            vec!["public_secrets", "ending in _secrets"],
        ),
        (
            s(&[
                "firm",
                "add",
                "gamma",
                "--client-id",
                "x",
                "--client-secret",
                "y",
                "--set",
                "bogus.key=1",
            ]),
            vec!["gamma", "bogus"],
        ),
        (
            s(&[
                "firm",
                "add",
                "gamma",
                "--client-id",
                "x",
                "--client-secret",
                "y",
                "--set",
                "database_url=elsewhere",
            ]),
            vec!["database_url", "per firm"],
        ),
        (
            s(&["--firm", "nosuch", "sync"]),
            vec!["nosuch", "not registered", "alpha, beta", "ppsync firm add"],
        ),
        (
            s(&["firm", "remove", "nosuch"]),
            vec!["nosuch", "firm list"],
        ),
    ] {
        let (code, out, err) = cli(args.clone()).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        let line = err.trim();
        assert_eq!(line.lines().count(), 1, "{args:?}: one line: {err}");
        for n in needles {
            assert!(line.contains(n), "{args:?}: {line:?} names {n:?}");
        }
    }

    for (name, f, other) in [("alpha", &alpha, &beta), ("beta", &beta, &alpha)] {
        let (code, out, err) = cli(s(&[
            "--firm",
            name,
            "auth",
            "import",
            "--refresh-token",
            &f.grant(),
        ]))
        .await;
        assert_eq!(code, 0, "{out}{err}");
        f.clear_journal();
        other.clear_journal();
        let (code, out, err) = cli(s(&["--firm", name, "sync"])).await;
        assert_eq!(code, 0, "{name}: {out}{err}");
        // Every request of the pass went out with this firm's own token (ppsim tells firms apart
        // by token): every resource listed (a first backfill, which also settles each endpoint's
        // dialect: a second request for most), none of the other firm's.
        let api: std::collections::BTreeSet<String> = f
            .journal()
            .iter()
            .filter(|e| e.path.starts_with("/api/"))
            .map(|e| e.path.clone())
            .collect();
        assert_eq!(api.len(), 26, "{name}: every resource listed: {api:?}");
        assert!(
            other.journal().iter().all(|e| !e.path.starts_with("/api/")),
            "{name}'s pass sent nothing as the other firm"
        );
    }
    let (code, out, err) = cli(s(&["--firm", "alpha", "export", "matters"])).await;
    assert_eq!(code, 0, "{err}");
    let exported: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let matters = ppsync::resource::find("matters").unwrap();
    let mut truth = alpha.truth(matters.path);
    sort_by_key(matters, &mut truth);
    assert_eq!(exported, truth, "alpha's export is alpha's data");
    assert_ne!(alpha.truth(matters.path), beta.truth(matters.path));

    // Each firm's store equals its own firm, and the default firm's mirror is untouched.
    let base = ppsync::config::Config::load(Some(&config)).unwrap();
    let home = ppsync::app::open_home(&base).await.unwrap();
    for (name, f) in [("alpha", &alpha), ("beta", &beta)] {
        let (cfg, store) = ppsync::app::open_firm(&base, &home, name).await.unwrap();
        assert_eq!(cfg.firm.as_deref(), Some(name));
        let n = assert_store_equals_firm(&store, f, name).await;
        assert!(n > 100, "{name}: {n} records");
    }
    let (alpha_cfg, _) = ppsync::app::open_firm(&base, &home, "alpha").await.unwrap();
    assert_eq!(
        alpha_cfg.budget_requests, 250,
        "the firm's own settings apply"
    );
    let (beta_cfg, _) = ppsync::app::open_firm(&base, &home, "beta").await.unwrap();
    assert_eq!(beta_cfg.budget_requests, 300);
    for res in ppsync::resource::RESOURCES {
        assert_eq!(home.counts(res).await.unwrap(), (0, 0), "{}", res.name);
    }

    let (code, out, err) = cli(s(&["firm", "list", "--json"])).await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    for f in list.as_array().unwrap() {
        assert_eq!(f["credentials_stored"], true);
        assert_eq!(f["last_cycle"]["outcome"], "ok", "{f}");
        assert!(
            !out.contains(&alpha.client_secret()),
            "secrets are not listed"
        );
    }
    let (code, _, _) = cli(s(&["firm", "remove", "beta"])).await;
    assert_eq!(code, 0);
    let (code, _, err) = cli(s(&["--firm", "beta", "status"])).await;
    assert_eq!(code, 2);
    assert!(err.contains("not registered (registered: alpha)"), "{err}");
}
