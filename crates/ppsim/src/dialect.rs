//! Dialects: one switch per thing the real API's behaviour is unknown about, per list endpoint,
//! so a client can be tested against every answer. The defaults are the simulator's original
//! behaviour (what the spec suggests).
//!
//! Per endpoint ([`Dialect`]): a silent server-driven page size (`page_cap`), whether the OData
//! options `$top`, `$skip` and `$orderby` are honoured, ignored or rejected ([`Opt`]), and whether
//! `updated_since` is inclusive, exclusive or ignored ([`Since`]). Per firm: whether 429s carry
//! `Retry-After`, and the budget's limit and window (see `SimHandle::set_dialect`...).

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::model::Res;

/// The OData server-driven page size observed on `/invoices` (§3): the default `page_cap` there.
pub const INVOICE_CAP: usize = 2500;

/// What an endpoint does with an OData query option (`$top`, `$skip`, `$orderby`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Opt {
    /// Applied (a malformed value is a 400).
    #[default]
    #[serde(alias = "honour", alias = "Honor", alias = "honor")]
    Honour,
    /// Parsed and dropped: a malformed value is ignored too.
    #[serde(alias = "ignore")]
    Ignore,
    /// Present in the query → 400 with ASP.NET OData's validation message.
    #[serde(alias = "reject")]
    Reject,
}

/// How an endpoint applies `updated_since` (`created_since` always keeps `>=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Since {
    /// `updated_at >= value`.
    #[default]
    #[serde(alias = "inclusive")]
    Inclusive,
    /// `updated_at > value`.
    #[serde(alias = "exclusive")]
    Exclusive,
    /// Accepted (a malformed timestamp is still a 400) and not applied.
    #[serde(alias = "ignore")]
    Ignore,
}

impl FromStr for Opt {
    type Err = String;

    fn from_str(s: &str) -> Result<Opt, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "honour" | "honor" => Ok(Opt::Honour),
            "ignore" => Ok(Opt::Ignore),
            "reject" => Ok(Opt::Reject),
            _ => Err(format!("{s:?} is not one of honour, ignore, reject")),
        }
    }
}

impl FromStr for Since {
    type Err = String;

    fn from_str(s: &str) -> Result<Since, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "inclusive" => Ok(Since::Inclusive),
            "exclusive" => Ok(Since::Exclusive),
            "ignore" => Ok(Since::Ignore),
            _ => Err(format!("{s:?} is not one of inclusive, exclusive, ignore")),
        }
    }
}

/// How one list endpoint treats paging, ordering and `updated_since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialect {
    /// Server-driven page size: a list response of this endpoint holds at most this many records
    /// (after `$skip`, with `$top`: len = min(`$top` if honoured, page_cap, what remains)),
    /// silently (no next link, status 200). `None` = uncapped.
    pub page_cap: Option<usize>,
    pub top: Opt,
    pub skip: Opt,
    pub orderby: Opt,
    /// How `updated_since` is applied (`created_since` keeps `>=`).
    pub updated_since: Since,
}

impl Dialect {
    /// What an endpoint that takes parameters does by default: uncapped, every OData option
    /// honoured, `updated_since` inclusive.
    pub const PARAMS: Dialect = Dialect {
        page_cap: None,
        top: Opt::Honour,
        skip: Opt::Honour,
        orderby: Opt::Honour,
        updated_since: Since::Inclusive,
    };

    /// What an endpoint that takes no parameters (messages, tags) does by default: it ignores
    /// every parameter.
    pub const NO_PARAMS: Dialect = Dialect {
        page_cap: None,
        top: Opt::Ignore,
        skip: Opt::Ignore,
        orderby: Opt::Ignore,
        updated_since: Since::Ignore,
    };

    /// The default dialect of an endpoint (its lowercase list path, as in the control API:
    /// `matters`, `customfields/matter`, `tags/activity`, `messages`...); `None` if unknown.
    pub fn default_for(endpoint: &str) -> Option<Dialect> {
        Res::from_name(endpoint).map(Dialect::of)
    }

    pub(crate) fn of(res: Res) -> Dialect {
        if !takes_params(res) {
            Dialect::NO_PARAMS
        } else if res == Res::Invoices {
            Dialect {
                page_cap: Some(INVOICE_CAP),
                ..Dialect::PARAMS
            }
        } else {
            Dialect::PARAMS
        }
    }
}

/// A change to a [`Dialect`]: each field present replaces the dialect's; absent fields keep it.
/// In JSON, `page_cap` absent keeps the cap, `null` uncaps, a number caps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialectPatch {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub page_cap: Option<Option<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<Opt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<Opt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orderby: Option<Opt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_since: Option<Since>,
}

/// A field that is present (even `null`) is `Some`; `#[serde(default)]` makes an absent one `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl DialectPatch {
    /// The field names of a patch in JSON (the control route checks a body against them).
    pub(crate) const FIELDS: [&'static str; 5] =
        ["page_cap", "top", "skip", "orderby", "updated_since"];

    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == DialectPatch::default()
    }

    /// Lays the patch over `d`.
    pub fn apply(&self, d: &mut Dialect) {
        if let Some(cap) = self.page_cap {
            d.page_cap = cap;
        }
        if let Some(o) = self.top {
            d.top = o;
        }
        if let Some(o) = self.skip {
            d.skip = o;
        }
        if let Some(o) = self.orderby {
            d.orderby = o;
        }
        if let Some(s) = self.updated_since {
            d.updated_since = s;
        }
    }
}

/// Whether an endpoint takes parameters at all (messages and tags take none).
pub(crate) fn takes_params(res: Res) -> bool {
    !res.spec().filters.is_empty()
}

/// One firm's dialect: every endpoint's, and whether 429s carry `Retry-After`. (The budget's
/// limit and window live in the firm's `Budget`.)
#[derive(Clone, Debug)]
pub(crate) struct DialectState {
    /// By `Res::idx`.
    endpoints: Vec<Dialect>,
    pub retry_after: bool,
}

impl Default for DialectState {
    fn default() -> DialectState {
        DialectState {
            endpoints: Res::ALL.iter().map(|r| Dialect::of(*r)).collect(),
            retry_after: true,
        }
    }
}

impl DialectState {
    pub fn get(&self, res: Res) -> Dialect {
        self.endpoints[res.idx()]
    }

    /// `Some(res)`: the whole patch on that endpoint. `None`: the whole patch on every endpoint
    /// that takes parameters, and only its `page_cap` on those that take none.
    pub fn apply(&mut self, res: Option<Res>, patch: &DialectPatch) {
        match res {
            Some(r) => patch.apply(&mut self.endpoints[r.idx()]),
            None => {
                for r in Res::ALL {
                    let d = &mut self.endpoints[r.idx()];
                    if takes_params(r) {
                        patch.apply(d);
                    } else if let Some(cap) = patch.page_cap {
                        d.page_cap = cap;
                    }
                }
            }
        }
    }

    /// `{"matters": Dialect, ...}`, every endpoint.
    pub fn endpoints_json(&self) -> Value {
        let map: serde_json::Map<String, Value> = Res::ALL
            .iter()
            .map(|r| {
                (
                    r.name().to_owned(),
                    serde_json::to_value(self.get(*r)).expect("serializable"),
                )
            })
            .collect();
        Value::Object(map)
    }
}

/// The `$top` / `$skip` rejection (ASP.NET OData's `AllowedQueryOptions` validation).
pub(crate) fn option_not_allowed(option: &str) -> String {
    format!(
        "The query specified in the URI is not valid. Query option '{option}' is not allowed. \
         To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or \
         QueryValidationSettings."
    )
}

/// The `$orderby` rejection: OData names the first property it cannot order by (deliberately
/// without the word "orderby", as the real message would be).
pub(crate) fn no_such_property(res: Res, orderby: &str) -> String {
    let field = orderby
        .split(',')
        .next()
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("");
    format!(
        "The query specified in the URI is not valid. Could not find a property named '{field}' \
         on type 'PracticePanther.Api.Models.{}'.",
        type_name(res)
    )
}

/// The API's model type behind a list.
pub(crate) fn type_name(res: Res) -> &'static str {
    match res {
        Res::Accounts => "Account",
        Res::Contacts => "Contact",
        Res::Matters => "Matter",
        Res::Tasks => "Task",
        Res::Events => "Event",
        Res::Notes => "Note",
        Res::CallLogs => "CallLog",
        Res::Emails => "Email",
        Res::TimeEntries => "TimeEntry",
        Res::Expenses => "Expense",
        Res::FlatFees => "FlatFee",
        Res::Invoices => "Invoice",
        Res::Payments => "Payment",
        Res::Users => "User",
        Res::CfCompany | Res::CfMatter | Res::CfContact => "CustomField",
        Res::TagsAccount | Res::TagsMatter | Res::TagsActivity => "Tag",
        Res::Relationships => "Relationship",
        Res::Files => "File",
        Res::Items => "Item",
        Res::ExpenseCategories => "ExpenseCategory",
        Res::BankAccounts => "BankAccount",
        Res::Messages => "Message",
    }
}

/// `{"limit": N, "window_secs": S}` (whole seconds as an integer).
pub(crate) fn budget_json(limit: u32, window: std::time::Duration) -> Value {
    let secs = if window.subsec_nanos() == 0 {
        json!(window.as_secs())
    } else {
        json!(window.as_secs_f64())
    };
    json!({ "limit": limit, "window_secs": secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_page_cap_absent_keeps_null_uncaps_number_caps() {
        let p: DialectPatch = serde_json::from_str("{}").unwrap();
        assert!(p.is_empty());
        let p: DialectPatch = serde_json::from_str(r#"{"page_cap":null}"#).unwrap();
        assert_eq!(p.page_cap, Some(None));
        let p: DialectPatch =
            serde_json::from_str(r#"{"page_cap":7,"top":"Reject","updated_since":"Exclusive"}"#)
                .unwrap();
        assert_eq!(p.page_cap, Some(Some(7)));
        assert_eq!(p.top, Some(Opt::Reject));
        assert_eq!(p.updated_since, Some(Since::Exclusive));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"page_cap":7,"top":"Reject","updated_since":"Exclusive"}"#
        );
        let uncap = DialectPatch {
            page_cap: Some(None),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&uncap).unwrap(),
            r#"{"page_cap":null}"#
        );

        let mut d = Dialect::of(Res::Invoices);
        assert_eq!(d.page_cap, Some(INVOICE_CAP));
        uncap.apply(&mut d);
        assert_eq!(d, Dialect::PARAMS);
    }

    #[test]
    fn all_endpoints_take_the_whole_patch_no_param_ones_only_the_cap() {
        let mut st = DialectState::default();
        assert_eq!(st.get(Res::Messages), Dialect::NO_PARAMS);
        assert_eq!(st.get(Res::TagsMatter), Dialect::NO_PARAMS);
        assert_eq!(st.get(Res::Matters), Dialect::PARAMS);
        st.apply(
            None,
            &DialectPatch {
                page_cap: Some(Some(3)),
                top: Some(Opt::Reject),
                ..Default::default()
            },
        );
        assert_eq!(st.get(Res::Matters).top, Opt::Reject);
        assert_eq!(st.get(Res::Invoices).page_cap, Some(3));
        assert_eq!(st.get(Res::Messages).top, Opt::Ignore);
        assert_eq!(st.get(Res::Messages).page_cap, Some(3));
        st.apply(
            Some(Res::Messages),
            &DialectPatch {
                top: Some(Opt::Honour),
                ..Default::default()
            },
        );
        assert_eq!(st.get(Res::Messages).top, Opt::Honour);
        assert_eq!("Honor".parse::<Opt>(), Ok(Opt::Honour));
        assert_eq!("EXCLUSIVE".parse::<Since>(), Ok(Since::Exclusive));
        assert!("sometimes".parse::<Opt>().is_err());
    }
}
