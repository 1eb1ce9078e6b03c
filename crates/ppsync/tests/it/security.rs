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
