//! `/metrics`: the status snapshot as Prometheus metrics (text format 0.0.4), through
//! `prometheus-client`'s typed families and encoder.
//!
//! The registry is built afresh from a snapshot on each scrape rather than kept up to date by the
//! code that does the work: every value already lives in the database (counts, run history,
//! cursors) or in the client's counters, and there is no process-global recorder to install (which
//! would also fight several engines in one test process). A fleet instance adds every firm's
//! snapshot to one registry, each sample labelled `firm`.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::snapshot::Snapshot;

/// The `Content-Type` of what [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A sample's labels: `firm` first on a fleet instance, then the family's own.
type Labels = Vec<(&'static str, String)>;
type IntGauge = Family<Labels, Gauge>;
type FloatGauge = Family<Labels, Gauge<f64, AtomicU64>>;
type IntCounter = Family<Labels, Counter>;
type FloatCounter = Family<Labels, Counter<f64, AtomicU64>>;

/// The registry and its families. The encoder appends `_total` to a counter's name.
pub struct Metrics {
    registry: Registry,
    requests: IntCounter,
    throttled: IntCounter,
    token_refreshes: IntCounter,
    budget_limit: IntGauge,
    budget_in_window: IntGauge,
    budget_wait: FloatCounter,
    records: IntGauge,
    records_changed: IntCounter,
    failures: IntCounter,
    run_duration: FloatGauge,
    last_success: FloatGauge,
    lag: IntGauge,
    behind: IntGauge,
    incomplete: IntGauge,
    unproven: IntGauge,
    largest_page: IntGauge,
    page_cap: IntGauge,
    clock_skew: IntGauge,
    healthy: IntGauge,
    auth_failed: IntGauge,
    record_issues: IntGauge,
    detail_backlog: IntGauge,
    detail_failing: IntGauge,
    outbox_depth: IntGauge,
    outbox_dead: IntGauge,
    outbox_rows: IntGauge,
}

/// Registers a family (a clone shares its samples) and returns it.
fn family<M: prometheus_client::registry::Metric + Clone + Default>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let m = M::default();
    registry.register(name, help, m.clone());
    m
}

impl Default for Metrics {
    fn default() -> Self {
        // Help texts have no final period: the encoder adds one.
        let mut r = Registry::default();
        // The encoder appends `_info`. The commit only when the build was given one (the image's
        // build passes PPSYNC_GIT_COMMIT); a build script reading .git is not worth its weight.
        let mut build = vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
        if let Some(commit) = option_env!("PPSYNC_GIT_COMMIT").filter(|c| !c.is_empty()) {
            build.push(("commit".to_string(), commit.to_string()));
        }
        r.register(
            "ppsync_build",
            "The running ppsync's version",
            Info::new(build),
        );
        Metrics {
            requests: family(
                &mut r,
                "ppsync_requests",
                "API requests sent since the process started (token calls and retries included)",
            ),
            throttled: family(
                &mut r,
                "ppsync_throttled",
                "Responses that asked us to slow down (429/503 with Retry-After)",
            ),
            token_refreshes: family(
                &mut r,
                "ppsync_token_refreshes",
                "OAuth access-token refreshes",
            ),
            budget_limit: family(
                &mut r,
                "ppsync_budget_limit",
                "Requests allowed in one budget window",
            ),
            budget_in_window: family(
                &mut r,
                "ppsync_budget_requests_in_window",
                "Requests sent in the current budget window",
            ),
            budget_wait: family(
                &mut r,
                "ppsync_budget_wait_seconds",
                "Time spent waiting for room in the request budget",
            ),
            records: family(
                &mut r,
                "ppsync_records",
                "Records in the mirror, live or marked deleted",
            ),
            records_changed: family(
                &mut r,
                "ppsync_records_changed",
                "Records written (new, changed or undeleted) over the run history",
            ),
            failures: family(
                &mut r,
                "ppsync_run_failures",
                "Runs of the resource that ended skipped or failed, over the run history",
            ),
            run_duration: family(
                &mut r,
                "ppsync_last_run_duration_seconds",
                "How long the resource's latest finished run took",
            ),
            last_success: family(
                &mut r,
                "ppsync_last_success_timestamp_seconds",
                "Unix time of the resource's last complete sync (absent: never synced)",
            ),
            lag: family(
                &mut r,
                "ppsync_lag_seconds",
                "Seconds since the resource's last complete sync (absent: never synced)",
            ),
            behind: family(
                &mut r,
                "ppsync_resource_behind",
                "1 when an enabled resource has fallen behind its schedule (or never synced)",
            ),
            incomplete: family(
                &mut r,
                "ppsync_resource_incomplete",
                "1 when the resource's last complete listing could not reach records that exist",
            ),
            unproven: family(
                &mut r,
                "ppsync_resource_unproven",
                "1 when the resource's last complete listing could not be proven complete (nothing seen missing)",
            ),
            largest_page: family(
                &mut r,
                "ppsync_endpoint_largest_page",
                "The most records one response of the endpoint has held (its page cap is at least this)",
            ),
            page_cap: family(
                &mut r,
                "ppsync_endpoint_page_cap",
                "The endpoint's page cap, where proven (a response of this many was followed by more)",
            ),
            clock_skew: family(
                &mut r,
                "ppsync_server_clock_skew_seconds",
                "The server's Date minus our clock, when it last exceeded sync.max_clock_skew",
            ),
            healthy: family(
                &mut r,
                "ppsync_healthy",
                "1 when no enabled resource is behind or incomplete and the credentials work (what /healthz answers)",
            ),
            auth_failed: family(
                &mut r,
                "ppsync_auth_failed",
                "1 while the API rejects the stored credentials (run ppsync auth login)",
            ),
            record_issues: family(
                &mut r,
                "ppsync_record_issues",
                "Records stored with a field that could not be read into its typed column (NULL there)",
            ),
            detail_backlog: family(
                &mut r,
                "ppsync_detail_backlog",
                "Records waiting for their by-id read (fields the list leaves out)",
            ),
            detail_failing: family(
                &mut r,
                "ppsync_detail_failing",
                "Queued by-id reads whose last try failed (retried with backoff)",
            ),
            outbox_depth: family(
                &mut r,
                "ppsync_outbox_depth",
                "Notifications waiting for delivery",
            ),
            outbox_dead: family(
                &mut r,
                "ppsync_outbox_dead",
                "Notifications set aside after their last allowed try (ppsync notify retry sends them again)",
            ),
            outbox_rows: family(
                &mut r,
                "ppsync_outbox_rows",
                "Outbox rows by kind and status",
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// Adds a snapshot's samples; `firm` labels each of them (a fleet instance's firms).
    pub fn add(&mut self, firm: Option<&str>, s: &Snapshot) {
        let base: Labels = firm.map(|f| ("firm", f.to_string())).into_iter().collect();
        let with = |extra: &[(&'static str, &str)]| -> Labels {
            let mut l = base.clone();
            l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            l
        };
        let set = |f: &IntGauge, labels: Labels, v: i64| {
            f.get_or_create(&labels).set(v);
        };
        if let Some(r) = &s.requests {
            self.requests.get_or_create(&base).inc_by(r.total);
            self.throttled.get_or_create(&base).inc_by(r.throttled);
            self.token_refreshes
                .get_or_create(&base)
                .inc_by(r.token_refreshes);
        }
        if let Some(b) = &s.budget {
            set(&self.budget_limit, base.clone(), count(b.limit as u64));
            set(
                &self.budget_in_window,
                base.clone(),
                count(b.in_window as u64),
            );
            self.budget_wait
                .get_or_create(&base)
                .inc_by(b.waited_ms_total as f64 / 1000.0);
        }
        for r in &s.resources {
            let res = with(&[("resource", r.name)]);
            set(
                &self.records,
                with(&[("resource", r.name), ("state", "live")]),
                r.live,
            );
            set(
                &self.records,
                with(&[("resource", r.name), ("state", "deleted")]),
                r.deleted,
            );
            self.records_changed
                .get_or_create(&res)
                .inc_by(r.records_changed_total.max(0) as u64);
            self.failures
                .get_or_create(&res)
                .inc_by(r.failures_total.max(0) as u64);
            if let Some(d) = r.last_run.as_ref().and_then(run_seconds) {
                self.run_duration.get_or_create(&res).set(d);
            }
            if let Some(t) = r.last_success.as_deref().and_then(timestamp_seconds) {
                self.last_success.get_or_create(&res).set(t);
            }
            if let Some(l) = r.lag_seconds {
                set(&self.lag, res.clone(), l);
            }
            if r.enabled {
                set(&self.behind, res.clone(), r.behind.into());
            }
            set(&self.incomplete, res.clone(), r.incomplete.is_some().into());
            set(&self.unproven, res.clone(), r.unproven.is_some().into());
            if r.dialect.largest() > 0 {
                set(&self.largest_page, res.clone(), count(r.dialect.largest()));
            }
            if let Some(c) = r.dialect.cap() {
                set(&self.page_cap, res.clone(), count(c));
            }
            let issues = s.record_issues.get(r.name).copied().unwrap_or(0);
            set(&self.record_issues, res.clone(), issues);
            let backlog = s.details.get(r.name).cloned().unwrap_or_default();
            set(&self.detail_backlog, res.clone(), backlog.queued);
            set(&self.detail_failing, res, backlog.failing);
        }
        if let Some(skew) = &s.api.clock_skew_secs {
            set(&self.clock_skew, base.clone(), skew.value);
        }
        set(&self.healthy, base.clone(), s.healthy.into());
        set(
            &self.auth_failed,
            base.clone(),
            s.auth_failed.is_some().into(),
        );
        set(&self.outbox_depth, base.clone(), s.outbox_pending);
        set(&self.outbox_dead, base.clone(), s.outbox_dead);
        for (key, n) in &s.outbox {
            let (kind, status) = key.split_once('/').unwrap_or((key.as_str(), ""));
            set(
                &self.outbox_rows,
                with(&[("kind", kind), ("status", status)]),
                *n,
            );
        }
    }

    /// The exposition, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// A count as a gauge's value (none comes near i64's range).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A finished run's duration (None while it runs, or if a stored time does not parse).
fn run_seconds(run: &crate::store::RunRow) -> Option<f64> {
    let start = crate::time::parse_api_time(&run.started_at)?;
    let end = crate::time::parse_api_time(run.finished_at.as_deref()?)?;
    Some((end - start).num_milliseconds().max(0) as f64 / 1000.0)
}

fn timestamp_seconds(s: &str) -> Option<f64> {
    crate::time::parse_api_time(s).map(|t| t.timestamp_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_labels_every_sample_with_its_firm_escaped() {
        let mut m = Metrics::default();
        m.add(Some("a \"b\"\\\n"), &crate::status::snapshot::tests::odd());
        m.add(Some("c"), &crate::status::snapshot::tests::odd());
        let text = m.encode();
        let label = r#"firm="a \"b\"\\\n""#;
        assert!(
            text.contains(&format!("ppsync_requests_total{{{label}}} 5\n")),
            "{text}"
        );
        assert!(
            text.contains("ppsync_records{firm=\"c\",resource=\"matters\",state=\"live\"} 7\n")
        );
        assert!(text.contains("ppsync_budget_wait_seconds_total{firm=\"c\"} 1.5\n"));
        assert!(text.contains("ppsync_run_failures_total{firm=\"c\",resource=\"matters\"} 1\n"));
        // One build_info, unlabelled by firm, whatever the number of firms.
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(text.matches("ppsync_build_info{").count(), 1, "{text}");
        assert!(text.contains(&format!("ppsync_build_info{{version=\"{version}\"")));
        assert!(text.contains(
            r#"ppsync_outbox_rows{firm="c",kind="<b>\"odd\"<|b> & \\ \n",status="dead"} 1"#
        ));
        // Each family's HELP and TYPE once, whatever the number of firms.
        assert_eq!(text.matches("# TYPE ppsync_records gauge\n").count(), 1);
        assert_eq!(text.matches("# HELP ppsync_requests_total ").count(), 1);
        assert!(!text.contains(".."), "one period ends each HELP");
    }
}
