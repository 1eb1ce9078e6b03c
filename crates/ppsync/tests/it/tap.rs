//! `ppsync tap`: the mirror as a Singer tap, read by the real `target-jsonl` (PyPI, in the test
//! venv): a full run holds exactly the mirror's records; a run from the emitted STATE holds
//! exactly what changed since (deletions flagged); the catalog selects streams.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ppsync::resource::{RESOURCES, Resource};
use serde_json::{Value, json};

use crate::support::*;

/// Children killed if the test fails before they end.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn target_jsonl() -> PathBuf {
    let python = std::env::var("PPSYNC_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("PPSYNC_TEST_PYTHON is not set: run ./scripts/test.sh, which makes a Python venv with target-jsonl (target/py)")
    });
    let bin = Path::new(&python)
        .parent()
        .expect("the venv's bin folder")
        .join("target-jsonl");
    assert!(
        bin.exists(),
        "{} is missing: run ./scripts/test.sh to install target-jsonl in the venv",
        bin.display()
    );
    bin
}

/// The tap's own JSON config naming the app's TOML (no settle: nothing else writes the mirror).
fn tap_config(app: &TestApp) -> PathBuf {
    let path = app.config_path.with_file_name("tap.json");
    let cfg = json!({"ppsync_config": app.config_path, "settle_seconds": 0});
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

/// `ppsync tap --config tap.json ARGS | target-jsonl` into a fresh folder: the records written
/// per stream, and the state the target printed (the last STATE it read).
async fn tap_into_target(
    tap: &Path,
    args: &[&str],
    dest: &Path,
) -> (BTreeMap<String, Vec<Value>>, Value) {
    let target = target_jsonl();
    let (tap, dest) = (tap.to_path_buf(), dest.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dest).unwrap();
        let target_cfg = dest.with_extension("target.json");
        std::fs::write(
            &target_cfg,
            json!({"destination_path": dest, "do_timestamp_file": false}).to_string(),
        )
        .unwrap();
        let mut children = Children(Vec::new());
        let mut producer = ppsync_cmd(&tap)
            .arg("tap")
            .args(&args)
            .env_remove("PPSYNC_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ppsync runs");
        let pipe = producer.stdout.take().unwrap();
        children.0.push(producer);
        let consumer = Command::new(&target)
            .arg("--config")
            .arg(&target_cfg)
            .stdin(Stdio::from(pipe))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        children.0.push(consumer);
        let consumer = children.0.pop().unwrap().wait_with_output().unwrap();
        let producer = children.0.pop().unwrap().wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&producer.stderr);
        assert!(producer.status.success(), "ppsync tap: {err}");
        assert!(err.is_empty(), "the tap printed on stderr: {err}");
        assert!(
            consumer.status.success(),
            "target-jsonl: {}",
            String::from_utf8_lossy(&consumer.stderr)
        );
        let stdout = String::from_utf8(consumer.stdout).unwrap();
        let state: Value =
            serde_json::from_str(stdout.lines().last().expect("the target prints the state"))
                .unwrap();
        let mut streams = BTreeMap::new();
        for entry in std::fs::read_dir(&dest).unwrap() {
            let path = entry.unwrap().path();
            let stream = path.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let records: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            streams.insert(stream, records);
        }
        (streams, state)
    })
    .await
    .expect("tap thread")
}

fn sorted(res: &Resource, mut v: Vec<Value>) -> Vec<Value> {
    sort_by_key(res, &mut v);
    v
}

#[tokio::test]
async fn a_full_run_holds_the_mirror_and_a_run_from_its_state_only_the_changes() {
    let sim = sim(0.02).await;
    sim.pause_changes(true);
    let app = app_with(sim.clone(), "").await;
    assert_clean(&app.pass().await);
    let tap = tap_config(&app);
    let dir = tempfile::tempdir().unwrap();

    // A full run: every stream holds exactly the mirror's records (target-jsonl validated each
    // against its stream's schema on the way).
    let (full, state) = tap_into_target(&tap, &[], &dir.path().join("full")).await;
    let mut total = 0;
    for res in RESOURCES {
        let mirror = app.mirror(res).await;
        let got = sorted(res, full.get(res.name).cloned().unwrap_or_default());
        assert_eq!(got.len(), mirror.len(), "{}", res.name);
        assert!(
            got == mirror,
            "{}: the tap's records differ from the mirror's",
            res.name
        );
        total += got.len();
    }
    assert!(total > 1000, "a real firm's worth: {total}");
    assert_eq!(
        full.len(),
        RESOURCES
            .iter()
            .filter(|r| !app.truth(r).is_empty())
            .count()
    );
    for res in RESOURCES {
        assert!(
            state["bookmarks"][res.name]["synced_at"].is_string(),
            "{}: {state}",
            res.name
        );
    }

    // Changes at the source: a matter and a task edited, another matter's number made a string
    // (stored as received, noted odd: its schema must still admit it), a note deleted; a full
    // pass sees them (and re-lists every unchanged record, which must not come out again).
    let notes = find_res("notes");
    let matter = app.mirror(find_res("matters")).await[0].clone();
    let odd = app.mirror(find_res("matters")).await[1].clone();
    let task = app.mirror(find_res("tasks")).await[3].clone();
    let note = app.mirror(notes).await[1].clone();
    let id = |r: &Value| r["id"].as_str().unwrap().to_string();
    sim.edit(
        "matters",
        &id(&matter),
        json!({"display_name": "Renamed for the tap"}),
    )
    .unwrap();
    sim.set_raw_field("matters", &id(&odd), "number", "\"No. 7\"")
        .unwrap();
    sim.edit("tasks", &id(&task), json!({"subject": "Moved for the tap"}))
        .unwrap();
    sim.delete("notes", &id(&note)).unwrap();
    let (code, _, err) = app.cli(&["sync", "--full"]).await;
    assert_eq!(code, 0, "{err}");
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, state.to_string()).unwrap();

    let (changes, state) = tap_into_target(
        &tap,
        &["--state", state_file.to_str().unwrap()],
        &dir.path().join("changes"),
    )
    .await;
    let names: Vec<&str> = changes.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["matters", "notes", "tasks"],
        "only the changed records"
    );
    let matter_now = current(&app, "matters", &id(&matter)).await;
    assert_eq!(matter_now["display_name"], "Renamed for the tap");
    let odd_now = current(&app, "matters", &id(&odd)).await;
    assert_eq!(odd_now["number"], "No. 7");
    let mut both = vec![matter_now, odd_now];
    sort_by_key(find_res("matters"), &mut both);
    assert_eq!(changes["matters"], both);
    let task_now = current(&app, "tasks", &id(&task)).await;
    assert_eq!(task_now["subject"], "Moved for the tap");
    assert_eq!(changes["tasks"], [task_now]);
    // The deleted note: its last content, flagged with when the mirror saw it go.
    let [gone] = changes["notes"].as_slice() else {
        panic!("one note: {:?}", changes["notes"]);
    };
    let mut gone = gone.clone();
    let at = gone
        .as_object_mut()
        .unwrap()
        .remove("_sdc_deleted_at")
        .expect("_sdc_deleted_at");
    assert!(
        ppsync::time::parse_api_time(at.as_str().unwrap()).is_some(),
        "{at}"
    );
    assert_eq!(gone, note);

    // Nothing written since: nothing emitted.
    std::fs::write(&state_file, state.to_string()).unwrap();
    let (none, _) = tap_into_target(
        &tap,
        &["--state", state_file.to_str().unwrap()],
        &dir.path().join("none"),
    )
    .await;
    assert!(none.is_empty(), "{:?}", none.keys());
}

/// A record as the mirror holds it now.
async fn current(app: &TestApp, res: &str, id: &str) -> Value {
    app.mirror(find_res(res))
        .await
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{res} {id} in the mirror"))
}

fn find_res(name: &str) -> &'static Resource {
    ppsync::resource::find(name).unwrap()
}

/// Every stdout line of a tap run, parsed (each must be one JSON document).
fn messages(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn discovery_lists_every_stream_and_a_catalog_selects_what_is_emitted() {
    let sim = sim(0.1).await;
    sim.pause_changes(true);
    let app = app_with(sim.clone(), "").await;
    assert_clean(&app.pass().await);
    let tap = tap_config(&app);
    let dir = tempfile::tempdir().unwrap();

    let (code, out, err) = run_cli_async(&tap, &["tap", "--discover"]).await;
    assert_eq!(code, 0, "{err}");
    let catalog: Value = serde_json::from_str(&out).unwrap();
    let streams = catalog["streams"].as_array().unwrap();
    let ids: Vec<&str> = streams
        .iter()
        .map(|s| s["tap_stream_id"].as_str().unwrap())
        .collect();
    let all: Vec<&str> = RESOURCES.iter().map(|r| r.name).collect();
    assert_eq!(ids, all);
    for (s, r) in streams.iter().zip(RESOURCES) {
        assert_eq!(s["stream"], r.name);
        assert_eq!(s["key_properties"], json!([r.key]));
        assert_eq!(s["schema"]["type"], "object");
        assert!(s["schema"]["properties"][r.key].is_object(), "{}", r.name);
        let top = &s["metadata"][0];
        assert_eq!(top["breadcrumb"], json!([]));
        assert_eq!(top["metadata"]["table-key-properties"], json!([r.key]));
    }

    // Select two streams, as Meltano writes a catalog.
    let mut chosen = catalog.clone();
    for s in chosen["streams"].as_array_mut().unwrap() {
        let pick = s["stream"] == "matters" || s["stream"] == "tags_matter";
        s["metadata"][0]["metadata"]["selected"] = json!(pick);
    }
    let catalog_file = dir.path().join("catalog.json");
    std::fs::write(&catalog_file, chosen.to_string()).unwrap();
    let (code, out, err) =
        run_cli_async(&tap, &["tap", "--catalog", catalog_file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    let msgs = messages(&out);
    let mut per_stream: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &msgs {
        match m["type"].as_str().unwrap() {
            "SCHEMA" => assert!(
                per_stream
                    .insert(m["stream"].as_str().unwrap(), 0)
                    .is_none()
            ),
            "RECORD" => *per_stream.get_mut(m["stream"].as_str().unwrap()).unwrap() += 1,
            "STATE" => assert!(m["value"]["bookmarks"].is_object()),
            other => panic!("not a Singer message: {other}"),
        }
    }
    assert_eq!(
        per_stream,
        BTreeMap::from([
            ("matters", app.mirror(find_res("matters")).await.len()),
            (
                "tags_matter",
                app.mirror(find_res("tags_matter")).await.len()
            ),
        ])
    );
    assert_eq!(
        msgs.last().unwrap()["type"],
        "STATE",
        "a run ends on its state"
    );

    // A run stopped after a page resumes from that page's STATE: the streams done before it
    // emit nothing (nothing was written since), the interrupted one the rest of its window, the
    // ones after it everything.
    let (code, out, err) = run_cli_async(&tap, &["tap"]).await;
    assert_eq!(code, 0, "{err}");
    let full = messages(&out);
    let (stream, mid) = full
        .iter()
        .filter(|m| m["type"] == "STATE")
        .find_map(|m| {
            let marks = m["value"]["bookmarks"].as_object()?;
            let (s, _) = marks.iter().find(|(_, b)| b["after_id"].is_string())?;
            Some((s.clone(), m["value"].clone()))
        })
        .expect("a stream longer than a page");
    assert_eq!(mid["currently_syncing"], stream.as_str());
    let after = mid["bookmarks"][&stream]["after_id"]
        .as_str()
        .unwrap()
        .to_string();
    let state_file = dir.path().join("mid.json");
    std::fs::write(&state_file, mid.to_string()).unwrap();
    let (code, out, err) =
        run_cli_async(&tap, &["tap", "--state", state_file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    let mut resumed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in messages(&out).iter().filter(|m| m["type"] == "RECORD") {
        let res = find_res(m["stream"].as_str().unwrap());
        let key = m["record"][res.key].as_str().unwrap().to_string();
        resumed.entry(res.name.to_string()).or_default().push(key);
    }
    let mut rest = 0;
    for res in RESOURCES {
        let done_before = res.name != stream && mid["bookmarks"].get(res.name).is_some();
        let want: Vec<String> = app
            .mirror(res)
            .await
            .iter()
            .map(|r| r[res.key].as_str().unwrap().to_string())
            .filter(|k| !done_before && (res.name != stream || k.as_str() > after.as_str()))
            .collect();
        let got = resumed.remove(res.name).unwrap_or_default();
        assert!(
            got == want,
            "{}: {} records emitted, {} expected",
            res.name,
            got.len(),
            want.len()
        );
        if res.name == stream {
            rest = want.len();
        }
    }
    assert!(rest > 0, "{stream}: records after {after}");

    // A reader that goes away ends the tap quietly.
    let closed = tokio::task::spawn_blocking({
        let tap = tap.clone();
        move || {
            use std::io::BufRead as _;
            let mut child = Children(vec![
                ppsync_cmd(&tap)
                    .arg("tap")
                    .env_remove("PPSYNC_LOG")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            ]);
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(child.0[0].stdout.take().unwrap());
            reader.read_line(&mut line).unwrap();
            drop(reader);
            let out = child.0.pop().unwrap().wait_with_output().unwrap();
            (line, out)
        }
    })
    .await
    .unwrap();
    assert_eq!(messages(&closed.0)[0]["type"], "SCHEMA");
    assert!(
        closed.1.status.success(),
        "{:?}: {}",
        closed.1.status,
        String::from_utf8_lossy(&closed.1.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&closed.1.stderr), "");

    // Bad files: one line naming the file and what to do, nothing on stdout.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, r#"{"streams": [{"tap_stream_id": "widgets"}]}"#).unwrap();
    for (args, says) in [
        (vec!["--state", bad.to_str().unwrap()], "is not JSON"),
        (vec!["--catalog", unknown.to_str().unwrap()], "`widgets`"),
        (
            vec!["--catalog", "/nonexistent/catalog.json"],
            "cannot read --catalog",
        ),
    ] {
        let mut argv = vec!["tap"];
        argv.extend(args);
        let (code, out, err) = run_cli_async(&tap, &argv).await;
        assert_eq!(code, 2, "{argv:?}: {err}");
        assert_eq!(out, "", "{argv:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{argv:?}: {err}");
    }
}
