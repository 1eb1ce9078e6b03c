//! The annotated configuration file `ppsync init` writes.

/// The annotated file `ppsync init` writes.
pub const TEMPLATE: &str = r#"# ppsync configuration. Every key can be overridden by an environment variable:
# PPSYNC_<KEY> for top-level keys (PPSYNC_DATABASE_URL), PPSYNC_<SECTION>__<KEY> for the others
# (PPSYNC_SYNC__OVERLAP=30m). Durations are written 30s, 15m, 1h or 7d.

# Where the mirror lives: a SQLite file path (or sqlite: URL), or postgres://user:pass@host/db.
# A relative path is taken from this file's folder (from PPSYNC_DATABASE_URL: the working one).
# It holds the OAuth tokens too (a SQLite file is kept readable by its owner only).
database_url = "ppsync.db"
# PostgreSQL only: the schema of the default firm's tables (registered firms get a schema each,
# named after the firm).
database_schema = "public"

# The PracticePanther API. Credentials come from PracticePanther's API access request; prefer
# PPSYNC_CLIENT_ID / PPSYNC_CLIENT_SECRET over writing the secret here.
api_base_url = "https://app.practicepanther.com"
client_id = ""
client_secret = ""
# Where `ppsync auth login` listens for the authorization redirect (register it with PracticePanther).
redirect_uri = "http://127.0.0.1:8765/callback"

# The firm's time zone (IANA name): PracticePanther stores date-only fields as the instant of
# local noon or midnight and does not say the zone. Deadlines are read and shown in it.
time_zone = "UTC"

[sync]
# Every incremental query reaches back this far before the cursor, to catch late or skewed writes.
overlap = "15m"
# A cursor older than this (after downtime) re-lists the resource fully instead of catching up.
max_catch_up = "7d"
# Records per request ($top). 2500 is the largest page the API is known to serve (invoices); an
# endpoint proven to cap its responses lower gets pages of its cap (`ppsync probe` shows them).
page_size = 2500
# Pages commit one by one, except when the next page's answer arrives within `commit_wait` of a
# page being written (a fast server, a backfill): then it joins the same transaction, up to
# `commit_records` records, which spares SQLite rewriting its id index at every page. "0s":
# every page commits alone.
commit_records = 25000
commit_wait = "50ms"
# First run: full backfill (empty) or only this far back, e.g. "24h".
initial_lookback = ""
request_timeout = "120s"
# Tries of a request that fails transiently (5xx, network, cut-off body) before skipping the
# resource for this pass.
max_attempts = 4
# The longest Retry-After ppsync waits out; a longer one ends the pass, and the next starts after it.
max_retry_wait = "5m"
# A server `Date` further ahead of this machine's clock than this is not trusted as a cursor (our
# clock stands in, and the skew is shown by `ppsync status`).
max_clock_skew = "15m"
# Records a complete listing misses are confirmed gone by GET /{resource}/{id} (404) before they
# are marked deleted: every one up to this many, a sample of this many beyond.
confirm_deletions = 25

[budget]
# At most this many requests (token calls and retries included) in any sliding window.
requests = 300
window = "5m"

[schedule]
# How often each tier is polled by `ppsync run`.
high = "15m"    # matters, accounts, contacts, tasks
medium = "1h"   # notes, emails, events, call logs
low = "1d"      # billing, users, reference data, files, messages, tags
# The daily reconciliation (complete listings: repairs, and marks vanished records deleted), UTC.
reconcile_at = "03:00"

[deadlines]
# Where deadlines come from: task due dates, event starts, matters' statute of limitations date,
# and custom fields of type Date (of matters, contacts, accounts), by label. Each is notified `lead_days` days before its
# local date (0: on the day).
tasks = true
events = true
statute = true
matter_fields = ["45 Day Deadline", "180 Day Deadline"]
# Contacts' and accounts' (company) custom fields of type Date, by label: none by default.
contact_fields = []
account_fields = []
lead_days = [14, 7, 1, 0]
# A source's own lead days, by its name ("Task", "Event", "Statute of Limitations", a label).
[deadlines.lead_days_by_source]
# "45 Day Deadline" = [30, 14, 7, 1, 0]

[notify]
# New tasks and deadlines (at their lead times) are notified, at least once (receivers
# deduplicate by the stable id), on a task of their own: a slow or failing sink never delays
# syncing. How far ahead the status page lists deadlines:
window = "30d"
# A webhook gets each notification as a JSON POST with the Standard Webhooks headers
# (standardwebhooks.com): `webhook-id` (the stable id), `webhook-timestamp` (unix seconds) and,
# with a secret, `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
# Receivers reject timestamps older than a few minutes (replays). A secret written whsec_<base64>
# is decoded first, as the standard says; any other is used as it is. 2xx means delivered.
webhook_url = ""
webhook_secret = ""
webhook_timeout = "10s"
# A command gets each notification as one line of JSON on stdin (run with sh -c, in a process
# group of its own); exit 0 means delivered. After `command_timeout` it is killed, with whatever
# it started, and the try counts as failed. A relative program path (hooks/notify.sh) is taken
# from this file's folder.
command = ""
command_timeout = "30s"
# The only environment variables the command gets from ppsync's (none named PPSYNC_*: those hold
# ppsync's secrets). Payloads carry everything else it needs.
command_env = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"]
# A failed notification is tried again after 30s, doubling up to 2h; after this many failed tries
# (10: about 4 hours) it is set aside as `dead`, without holding up the others. `ppsync status`
# lists dead ones; `ppsync notify retry ID... | --all` sends them again. Tries made while the sink
# looks down (3 different notifications failing in a row) do not count.
max_attempts = 10
# E-mail: each notification as a plain-text message (a readable summary, then the JSON), its
# Message-ID derived from the stable id. smtps://host:465 is TLS; smtp://host:587 requires
# STARTTLS (plain only to a loopback address: a relay on this machine). The password can come
# from PPSYNC_NOTIFY__SMTP_PASSWORD instead of this file.
smtp_url = ""
smtp_username = ""
smtp_password = ""
email_from = ""      # e.g. "PPSync <ppsync@firm.example>"
email_to = []        # e.g. ["ops@firm.example"]
# "off": one message per notification. An interval ("1h", "1d"): one message per interval, on
# the hour (or day, UTC), listing every notification that came due meanwhile; e-mail must then be
# the only sink.
email_digest = "off"

[http]
# `ppsync run` serves /healthz, /metrics (Prometheus), /status (JSON) and a status page here.
listen = "127.0.0.1:9187"
# If set, requests must carry `Authorization: Bearer <token>`. Required when `listen` is not a
# loopback address (0.0.0.0, a LAN address): ppsync refuses to start without it.
token = ""
# The endpoint answers only requests whose Host is a loopback name or address (localhost,
# 127.0.0.1, [::1]) or its own listen address, so a web page whose name resolves to this
# machine (DNS rebinding) gets nothing from it (421). Names it is reached by, e.g. behind a
# reverse proxy or scraped by a DNS name: ["status.example.com"].
allowed_hosts = []

[fleet]
# `ppsync run` with firms registered (`ppsync firm add`): how often an instance looks for firms to
# take over (a dead instance's) or hand back (when another instance starts).
claim_interval = "10s"
# This instance's name in the run history and in pg_stat_activity (default: <host>-<pid>).
instance_name = ""

# Per-resource overrides, by table name:
# [resources.tasks]
# interval = "5m"
# [resources.messages]
# enabled = false
# Emails and payments: the list leaves out fields that only the by-id read returns (an email's
# body_html, a payment's refundedAmount), so new and changed records are also read by id, in the
# background on a fifth-less share of the budget (scheduled work first). false: the list's fields only.
# [resources.emails]
# details = true
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Error};
    use crate::resource;
    use std::time::Duration;

    fn from_toml(s: &str) -> Result<Config, Error> {
        Config::from_toml_str(s)
    }

    #[test]
    fn the_template_is_valid_and_gives_the_defaults() {
        let c = from_toml(TEMPLATE).unwrap();
        assert_eq!(c.sync.overlap, Duration::from_secs(900));
        assert_eq!(c.budget_requests, 300);
        assert_eq!(c.enabled_resources().len(), resource::RESOURCES.len());
        let d = crate::notify::NotifyConfig::default();
        assert_eq!(c.notify.command_env, d.command_env);
        assert_eq!(c.notify.command_timeout, d.command_timeout);
        assert_eq!(c.notify.max_attempts, d.max_attempts);
        let d = crate::deadlines::Sources::default();
        let s = &c.sync.deadlines;
        assert_eq!(
            (s.zone, &s.lead_days, &s.matter_fields),
            (d.zone, &d.lead_days, &d.matter_fields)
        );
        assert!(s.tasks && s.events && s.statute);
    }
}
