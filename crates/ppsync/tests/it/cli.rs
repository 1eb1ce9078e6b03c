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
            "id,created_at,updated_at,deleted_at,account_id,matter_id,subject,date,data\n"
        ),
        "{out}"
    );
    let (code, out, _) = app.cli(&["status", "--json"]).await;
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status.as_array().unwrap().len(), 26);
    let (code, out, _) = app.cli(&["report"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("a full pull of the 26 enabled resources now"),
        "{out}"
    );
}
