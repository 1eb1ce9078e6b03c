//! The status page (`/`) and a fleet instance's firm list, as maud templates: self-contained
//! (inline CSS, no script, no external assets), every value escaped by construction.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::snapshot::{ResourceStatus, Snapshot};

/// Escapes text for HTML element content and quoted attribute values (the login callback's
/// pages are written by hand).
pub(crate) fn esc(s: &str) -> String {
    html!((s)).into_string()
}

/// The single-firm page.
pub fn render(s: &Snapshot) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content="30";
                title { "ppsync status" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "ppsync" }
                    (health(s))
                    span.now { (short_time(&s.now, s.zone)) " · refreshes every 30 s" }
                }
                main {
                    (budget(s))
                    (resources(s))
                    (details(s))
                    (issues(s))
                    (runs(s))
                    (deadlines(s))
                    (outbox(s))
                }
            }
        }
    }
    .into_string()
}

fn health(s: &Snapshot) -> Markup {
    if s.healthy {
        return html! { span.pill.ok #health { "healthy" } };
    }
    let mut parts = Vec::new();
    if let Some(a) = &s.auth_failed {
        parts.push(format!(
            "auth_failed since {}: run ppsync auth login",
            crate::time::local_text(a.since, s.zone)
        ));
    }
    if !s.behind.is_empty() {
        parts.push(format!("behind: {}", s.behind.join(", ")));
    }
    if !s.incomplete.is_empty() {
        parts.push(format!("incomplete: {}", s.incomplete.join(", ")));
    }
    html! { span.pill.bad #health { (parts.join("; ")) } }
}

/// The request budget and the process's counters (a daemon's page always has them).
fn budget(s: &Snapshot) -> Markup {
    let (Some(b), Some(req)) = (&s.budget, &s.requests) else {
        return html! {};
    };
    let pct = if b.limit == 0 {
        0.0
    } else {
        (b.in_window as f64 / b.limit as f64 * 100.0).min(100.0)
    };
    let cards = [
        ("Requests since start", req.total.to_string()),
        (
            "Waited for budget",
            human((b.waited_ms_total / 1000) as i64),
        ),
        ("Throttled (429/503)", req.throttled.to_string()),
        ("Token refreshes", req.token_refreshes.to_string()),
        ("Outbox pending", s.outbox_pending.to_string()),
        ("Outbox dead", s.outbox_dead.to_string()),
    ];
    html! {
        section #budget {
            h2 { "Request budget" }
            div.cards {
                div.card {
                    div.k { "In the current window" }
                    div.v { (b.in_window) " / " (b.limit) }
                    div.meter { span style=(format!("width:{pct:.1}%")) {} }
                }
                @for (k, v) in cards {
                    div.card { div.k { (k) } div.v { (v) } }
                }
            }
        }
    }
}

fn resources(s: &Snapshot) -> Markup {
    html! {
        section #resources {
            h2 { "Resources" }
            table {
                thead { tr {
                    th { "resource" } th { "tier" } th { "every" } th { "records" }
                    th { "deleted" } th { "last success" } th { "lag" } th { "state" }
                    th { "last run" } th { "changed (all runs)" }
                } }
                tbody {
                    @for r in &s.resources { (resource_row(r, s.zone)) }
                }
            }
        }
    }
}

fn resource_row(r: &ResourceStatus, zone: chrono_tz::Tz) -> Markup {
    let state = if !r.enabled {
        html! { span.pill.off { "disabled" } }
    } else if r.listing_in_flight {
        html! { span.pill.run { "resuming" } }
    } else if r.incomplete.is_some() {
        html! { span.pill.bad { "incomplete" } }
    } else if r.behind {
        html! { span.pill.bad { "behind" } }
    } else {
        html! { span.pill.ok { "ok" } }
    };
    html! {
        tr class=(if r.behind { "res behind" } else { "res" }) id=(format!("res-{}", r.name)) {
            td { (r.name) }
            td { (r.tier) }
            td { (r.interval_seconds.map(interval_text).unwrap_or_default()) }
            td.n { (r.live) }
            td.n { (r.deleted) }
            td.t {
                @match &r.last_success {
                    Some(t) => (short_time(t, zone)),
                    None => span.muted { "never" },
                }
            }
            td.t { (r.lag_seconds.map(human).unwrap_or_default()) }
            td { (state) }
            td {
                @match &r.last_run {
                    None => span.muted { "none" },
                    Some(run) => {
                        (run.outcome) " " (run.mode) " · " (run.requests) " req, "
                        (run.records_changed) " changed"
                        @if let Some(e) = &run.error { div.err { (e) } }
                    }
                }
                // What the last complete listing could not reach (or could not prove).
                @if let Some(why) = &r.incomplete {
                    div.err { "incomplete: " (why) }
                } @else if let Some(why) = &r.unproven {
                    div.muted { "unproven: " (why) " (nothing seen missing)" }
                }
            }
            td.n { (r.records_changed_total) }
        }
    }
}

/// Records waiting for their by-id read.
fn details(s: &Snapshot) -> Markup {
    if s.details.is_empty() {
        return html! {};
    }
    html! {
        section #details {
            h2 { "By-id reads queued" }
            p.muted {
                "Fields the list leaves out (an email's body, a payment's refunds), read between \
                 cycles on background budget."
            }
            table {
                thead { tr { th { "resource" } th { "queued" } th { "failing" } } }
                tbody {
                    @for (name, b) in &s.details {
                        tr { td { (name) } td.n { (b.queued) } td.n { (b.failing) } }
                    }
                }
            }
        }
    }
}

/// Records stored with a field that could not be read.
fn issues(s: &Snapshot) -> Markup {
    if s.recent_issues.is_empty() {
        return html! {};
    }
    let total: i64 = s.record_issues.values().sum();
    html! {
        section #issues {
            h2 { "Odd records (" (total) ")" }
            p.muted { "Stored as received; the field's typed column is NULL." }
            table {
                thead { tr {
                    th { "resource" } th { "record" } th { "field" } th { "what" }
                    th { "last seen" }
                } }
                tbody {
                    @for i in &s.recent_issues {
                        tr {
                            td { (i.resource) } td { (i.record_id) } td { (i.field) }
                            td.err { (i.problem) } td.t { (short_time(&i.last_seen, s.zone)) }
                        }
                    }
                }
            }
        }
    }
}

fn runs(s: &Snapshot) -> Markup {
    html! {
        section #runs {
            h2 { "Recent runs" }
            @if s.recent_runs.is_empty() {
                p.empty { "no runs recorded yet" }
            } @else {
                table {
                    thead { tr {
                        th { "started" } th { "resource" } th { "mode" } th { "outcome" }
                        th { "requests" } th { "seen" } th { "changed" } th { "deleted" }
                    } }
                    tbody {
                        @for run in &s.recent_runs {
                            tr {
                                td.t { (short_time(&run.started_at, s.zone)) }
                                td { (run.resource) }
                                td { (run.mode) }
                                td {
                                    @if let Some(e) = &run.error {
                                        span.pill.bad { (run.outcome) } div.err { (e) }
                                    } @else {
                                        (run.outcome)
                                    }
                                }
                                td.n { (run.requests) }
                                td.n { (run.records_seen) }
                                td.n { (run.records_changed) }
                                td.n { (run.records_deleted) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn deadlines(s: &Snapshot) -> Markup {
    html! {
        section #deadlines {
            h2 { "Upcoming deadlines " span.muted { "(to " (short_time(&s.deadlines_until, s.zone)) ")" } }
            @if s.deadlines.is_empty() {
                p.empty { "nothing open comes due" }
            } @else {
                table {
                    thead { tr {
                        th { "due (" (s.deadlines.first().map(|d| d.time_zone.as_str()).unwrap_or("")) ")" }
                        th { "in" } th { "kind" } th { "subject" } th { "matter" } th { "client" }
                    } }
                    tbody {
                        @for d in &s.deadlines {
                            tr {
                                td.t { (d.local_text()) }
                                td.t { (human((d.at.to_utc() - s.taken_at).num_seconds())) }
                                td { (d.kind) }
                                td { (if d.resource == "matters" { "" } else { d.subject.as_deref().unwrap_or("") }) }
                                td { (d.matter.as_deref().unwrap_or("")) }
                                td { (d.client.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn outbox(s: &Snapshot) -> Markup {
    html! {
        section #outbox-section {
            h2 { "Notification outbox" }
            @if s.outbox.is_empty() {
                p.empty #outbox { "empty" }
            } @else {
                table #outbox .narrow {
                    thead { tr { th { "kind" } th { "status" } th { "rows" } } }
                    tbody {
                        @for (key, n) in &s.outbox {
                            @let (kind, status) = key.split_once('/').unwrap_or((key.as_str(), ""));
                            tr { td { (kind) } td { (status) } td.n { (n) } }
                        }
                    }
                }
            }
            @if !s.dead.is_empty() {
                h3 {
                    "Dead "
                    span.muted {
                        "(" (s.outbox_dead) " set aside; " code { "ppsync notify retry ID..." }
                        " or " code { "--all" } " sends them again)"
                    }
                }
                table #dead {
                    thead { tr { th { "id" } th { "tries" } th { "last error" } } }
                    tbody {
                        @for d in &s.dead {
                            tr { td { (d.id) } td.n { (d.attempts) } td { (d.last_error) } }
                        }
                    }
                }
            }
        }
    }
}

/// A fleet instance's page: the firms it serves, each linked to its own page.
pub fn render_fleet(instance: &str, firms: &[(String, Snapshot)]) -> String {
    html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "ppsync " (instance) } }
            body {
                h1 { "ppsync instance " (instance) }
                table {
                    tr { th { "firm" } th { "health" } th { "behind" } th { "requests" } }
                    @for (name, s) in firms {
                        tr {
                            td { a href=(format!("/firms/{name}/")) { (name) } }
                            td { (if s.healthy { "ok" } else { "behind" }) }
                            td { (s.behind.join(", ")) }
                            td { (s.requests.as_ref().map_or(0, |r| r.total)) }
                        }
                    }
                }
            }
        }
    }
    .into_string()
}

/// `2026-11-02 06:05:09 PST` from a stored timestamp, in the firm's zone, or the text as it is.
fn short_time(s: &str, zone: chrono_tz::Tz) -> String {
    crate::time::local_text_of(s, zone)
}

/// A duration in the largest sensible units: `42s`, `7m 3s`, `3h 12m`, `2d 4h`.
fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn interval_text(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

const CSS: &str = "
:root { --ok:#1a7f37; --bad:#c62828; --warn:#9a6700; --muted:#5f6b7a; --line:#e3e8ef; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color:#1f2328;
  margin:0; background:var(--bg); }
header { background:#1f2937; color:#fff; padding:14px 24px; display:flex; align-items:baseline; gap:16px; }
header h1 { font-size:18px; margin:0; font-weight:600; }
header .now { color:#cbd5e1; font-size:13px; margin-left:auto; }
main { padding:16px 24px 32px; max-width:1400px; }
h2 { font-size:15px; margin:24px 0 8px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:170px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:20px; font-weight:600; font-variant-numeric:tabular-nums; }
.meter { height:6px; background:var(--line); border-radius:3px; margin-top:6px; overflow:hidden; }
.meter span { display:block; height:100%; background:#2f81f7; }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.pill.ok { background:#dafbe1; color:var(--ok); }
.pill.bad { background:#ffebe9; color:var(--bad); }
.pill.off { background:var(--line); color:var(--muted); }
.pill.run { background:#fff8c5; color:var(--warn); }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); border-radius:8px; }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f0f3f6; font-size:12px; color:var(--muted); font-weight:600; white-space:nowrap; }
td.n { text-align:right; font-variant-numeric:tabular-nums; }
tr:last-child td { border-bottom:none; }
tr.behind td:first-child { border-left:3px solid var(--bad); }
.err { color:var(--bad); font-size:12px; max-width:420px; overflow-wrap:anywhere; }
.muted { color:var(--muted); }
.empty { color:var(--muted); padding:8px 0; }
table.narrow { width:auto; min-width:420px; }
.t { white-space:nowrap; font-variant-numeric:tabular-nums; }
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;'&lt;/a&gt;"
        );
    }

    #[test]
    fn odd_text_is_escaped_everywhere_on_the_page() {
        let s = crate::status::snapshot::tests::odd();
        for html in [
            render(&s),
            render_fleet("<i>", &[("<firm>".to_string(), s)]),
        ] {
            assert!(!html.contains("<b>") && !html.contains("<i>") && !html.contains("<firm>"));
            assert!(html.contains("&lt;"), "{html}");
        }
        let page = render(&crate::status::snapshot::tests::odd());
        assert!(page.contains("&lt;b&gt;&quot;odd&quot;&lt;/b&gt; &amp; \\"));
        assert!(page.contains("<tr class=\"res behind\" id=\"res-matters\">"));
        assert!(page.contains("<span class=\"pill bad\">incomplete</span>"));
        assert!(page.contains("<table id=\"dead\">"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(42), "42s");
        assert_eq!(human(423), "7m 3s");
        assert_eq!(human(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(human(2 * 86400 + 4 * 3600), "2d 4h");
        assert_eq!(interval_text(900), "15m");
        assert_eq!(interval_text(86400), "1d");
    }
}
