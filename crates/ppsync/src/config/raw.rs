//! The configuration's shape as written (TOML file, environment, a firm's settings): every key
//! optional, unknown ones refused; `Config::validate` makes it a `Config`.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) database_url: Option<String>,
    pub(super) database_schema: Option<String>,
    pub(super) api_base_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) redirect_uri: Option<String>,
    pub(super) time_zone: Option<String>,
    #[serde(default)]
    pub(super) deadlines: super::deadlines::RawDeadlines,
    #[serde(default)]
    pub(super) sync: RawSync,
    #[serde(default)]
    pub(super) budget: RawBudget,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) resources: std::collections::BTreeMap<String, RawResource>,
    #[serde(default)]
    pub(super) notify: RawNotify,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) fleet: RawFleet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) claim_interval: Option<String>,
    pub(super) instance_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) window: Option<String>,
    pub(super) webhook_url: Option<String>,
    pub(super) webhook_secret: Option<String>,
    pub(super) webhook_timeout: Option<String>,
    pub(super) command: Option<String>,
    pub(super) command_timeout: Option<String>,
    pub(super) command_env: Option<StrList>,
    pub(super) max_attempts: Option<u32>,
    pub(super) smtp_url: Option<String>,
    pub(super) smtp_username: Option<String>,
    pub(super) smtp_password: Option<String>,
    pub(super) email_from: Option<String>,
    pub(super) email_to: Option<StrList>,
    pub(super) email_digest: Option<String>,
}

/// A list of names, as a TOML array or (handier in an environment variable) one string of names
/// separated by commas or spaces.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StrList {
    Many(Vec<String>),
    One(String),
}

impl StrList {
    pub(super) fn names(&self) -> Vec<String> {
        let split = |s: &str| -> Vec<String> {
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        };
        match self {
            StrList::Many(v) => v.iter().flat_map(|s| split(s)).collect(),
            StrList::One(s) => split(s),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<String>,
    pub(super) token: Option<String>,
    pub(super) allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) overlap: Option<String>,
    pub(super) max_catch_up: Option<String>,
    pub(super) page_size: Option<u32>,
    pub(super) commit_records: Option<u64>,
    pub(super) commit_wait: Option<String>,
    pub(super) initial_lookback: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_attempts: Option<u32>,
    pub(super) max_retry_wait: Option<String>,
    pub(super) max_clock_skew: Option<String>,
    pub(super) confirm_deletions: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub(super) requests: Option<u32>,
    pub(super) window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub(super) high: Option<String>,
    pub(super) medium: Option<String>,
    pub(super) low: Option<String>,
    pub(super) reconcile_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) enabled: Option<bool>,
    pub(super) interval: Option<String>,
    pub(super) details: Option<bool>,
}
