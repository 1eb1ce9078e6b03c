//! The one table of resources: every PracticePanther v2 list endpoint that ppsync mirrors, with its
//! API path, default tier, how it is filtered, its key, and the typed columns people filter and join
//! on. Everything else (the engine, the store, the CLI, migrations' consistency test) reads this table.
//!
//! Invariant: the SQL migrations create exactly the tables and typed columns listed here; the test
//! `schema_matches_resource_table` in the store checks it.

use std::fmt;
use std::time::Duration;

/// How often a resource is polled by default (product.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    High,
    Medium,
    Low,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::High, Tier::Medium, Tier::Low];

    pub fn default_interval(self) -> Duration {
        match self {
            Tier::High => Duration::from_secs(15 * 60),
            Tier::Medium => Duration::from_secs(60 * 60),
            Tier::Low => Duration::from_secs(24 * 60 * 60),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::High => "high",
            Tier::Medium => "medium",
            Tier::Low => "low",
        }
    }
}

/// How an incremental listing of the resource is narrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incremental {
    /// `updated_since` is accepted: ask for what changed since the cursor minus the overlap.
    UpdatedSince,
    /// No filter is accepted (messages, tags): every pass is a complete listing, which also
    /// lets every pass detect deletions.
    FullListing,
}

/// The SQL type of a typed column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    /// A UTC instant; stored as canonical text on SQLite and `timestamptz` on PostgreSQL.
    Time,
    Int,
    Real,
    Bool,
}

/// A typed column: its name and where its value sits in the record's JSON (a JSON pointer).
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub pointer: &'static str,
    pub ty: ColumnType,
}

const fn col(name: &'static str, pointer: &'static str, ty: ColumnType) -> Column {
    Column { name, pointer, ty }
}

use ColumnType::{Bool, Int, Real, Text, Time};

const ACCOUNT: Column = col("account_id", "/account_ref/id", Text);
const MATTER: Column = col("matter_id", "/matter_ref/id", Text);

/// One mirrored resource.
#[derive(Debug)]
pub struct Resource {
    /// The name users type (`--resource call_logs`) and the table's name.
    pub name: &'static str,
    /// The path after `/api/v2/`.
    pub path: &'static str,
    pub tier: Tier,
    pub incremental: Incremental,
    /// The records carry `updated_at`, so a listing can be ordered and resumed by it.
    pub has_updated_at: bool,
    /// The JSON field that identifies a record (`id`; tags have only a `name`).
    pub key: &'static str,
    pub columns: &'static [Column],
    /// The path of `GET /{by_id}/{id}` (None: the API has no single-record read). Deletion
    /// candidates of a listing that cannot be proven complete are confirmed there (404 = gone).
    pub by_id: Option<&'static str>,
    /// The API's own filters that partition the list by a business date (`date_from`/`date_to`),
    /// for when paging cannot list it whole.
    pub partition: Option<Partition>,
    /// The by-id read returns fields the list leaves out (an email's `body_html`, a payment's
    /// `refundedAmount`: practicepanther-api.md §2): by default, new and changed records are
    /// read by id too, in the background, and the mirror holds that rendering
    /// (`[resources.<name>] details` switches it).
    pub details: bool,
}

/// A pair of inclusive filters on a business date, and the typed column that holds the date.
#[derive(Clone, Copy, Debug)]
pub struct Partition {
    pub from: &'static str,
    pub to: &'static str,
    /// A typed column of the resource (its values bound the windows).
    pub column: &'static str,
}

/// `date_from`/`date_to` on the date held in `column` (practicepanther-api.md §2).
const fn dates(column: &'static str) -> Option<Partition> {
    Some(Partition {
        from: "date_from",
        to: "date_to",
        column,
    })
}

impl Resource {
    /// The index of the partition's column among `columns`.
    pub fn partition_column(&self) -> Option<usize> {
        let p = self.partition?;
        self.columns.iter().position(|c| c.name == p.column)
    }

    const fn partitioned(mut self, p: Option<Partition>) -> Self {
        self.partition = p;
        self
    }

    const fn read_by_id_at(mut self, path: &'static str) -> Self {
        self.by_id = Some(path);
        self
    }

    const fn with_details(mut self) -> Self {
        self.details = true;
        self
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Resource {}

const fn res(
    name: &'static str,
    path: &'static str,
    tier: Tier,
    has_updated_at: bool,
    columns: &'static [Column],
) -> Resource {
    Resource {
        name,
        path,
        tier,
        incremental: Incremental::UpdatedSince,
        has_updated_at,
        key: "id",
        columns,
        by_id: Some(path),
        partition: None,
        details: false,
    }
}

const fn full(
    name: &'static str,
    path: &'static str,
    key: &'static str,
    columns: &'static [Column],
) -> Resource {
    Resource {
        name,
        path,
        tier: Tier::Low,
        incremental: Incremental::FullListing,
        has_updated_at: false,
        key,
        columns,
        by_id: None,
        partition: None,
        details: false,
    }
}

/// Every resource of practicepanther-api.md §2, in the order a pass syncs them (most important first).
pub static RESOURCES: &[Resource] = &[
    res(
        "matters",
        "matters",
        Tier::High,
        true,
        &[
            ACCOUNT,
            col("number", "/number", Int),
            col("display_name", "/display_name", Text),
            col("status", "/status", Text),
            col("open_date", "/open_date", Time),
            col("close_date", "/close_date", Time),
            col(
                "statute_of_limitation_date",
                "/statute_of_limitation_date",
                Time,
            ),
        ],
    ),
    res(
        "accounts",
        "accounts",
        Tier::High,
        true,
        &[
            col("number", "/number", Int),
            col("display_name", "/display_name", Text),
            col("company_name", "/company_name", Text),
        ],
    ),
    res(
        "contacts",
        "contacts",
        Tier::High,
        false,
        &[
            ACCOUNT,
            col("display_name", "/display_name", Text),
            col("email", "/email", Text),
            col("is_primary_contact", "/is_primary_contact", Bool),
            col("status", "/status", Text),
        ],
    ),
    res(
        "tasks",
        "tasks",
        Tier::High,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("subject", "/subject", Text),
            col("status", "/status", Text),
            col("priority", "/priority", Text),
            col("due_date", "/due_date", Time),
        ],
    ),
    res(
        "notes",
        "notes",
        Tier::Medium,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("subject", "/subject", Text),
            col("date", "/date", Time),
        ],
    )
    .partitioned(dates("date")),
    res(
        "emails",
        "emails",
        Tier::Medium,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("subject", "/subject", Text),
            col("date", "/date", Time),
        ],
    )
    .with_details(),
    res(
        "events",
        "events",
        Tier::Medium,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("subject", "/subject", Text),
            col("is_all_day", "/is_all_day", Bool),
            col("start_date_time", "/start_date_time", Time),
            col("end_date_time", "/end_date_time", Time),
        ],
    )
    .partitioned(dates("start_date_time")),
    res(
        "call_logs",
        "calllogs",
        Tier::Medium,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("subject", "/subject", Text),
            col("date", "/date", Time),
        ],
    )
    .partitioned(dates("date")),
    res(
        "time_entries",
        "timeentries",
        Tier::Low,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("billed_by_user_id", "/billed_by_user_ref/id", Text),
            col("date", "/date", Time),
            col("hours", "/hours", Real),
            col("is_billed", "/is_billed", Bool),
        ],
    )
    .partitioned(dates("date")),
    res(
        "expenses",
        "expenses",
        Tier::Low,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("date", "/date", Time),
            col("amount", "/amount", Real),
            col("is_billed", "/is_billed", Bool),
        ],
    )
    .partitioned(dates("date")),
    res(
        "flat_fees",
        "flatfees",
        Tier::Low,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("date", "/date", Time),
            col("price", "/price", Real),
            col("is_billed", "/is_billed", Bool),
        ],
    )
    .partitioned(dates("date")),
    res(
        "invoices",
        "invoices",
        Tier::Low,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("issue_date", "/issue_date", Time),
            col("due_date", "/due_date", Time),
            col("total", "/total", Real),
            col("total_outstanding", "/total_outstanding", Real),
        ],
    )
    .partitioned(dates("issue_date")),
    res(
        "payments",
        "payments",
        Tier::Low,
        true,
        &[
            ACCOUNT,
            MATTER,
            col("date", "/date", Time),
            col("total_amount", "/total_amount", Real),
            col("status", "/status", Text),
        ],
    )
    .partitioned(dates("date"))
    .with_details(),
    res(
        "users",
        "users",
        Tier::Low,
        true,
        &[
            col("display_name", "/display_name", Text),
            col("email", "/email", Text),
            col("is_active", "/is_active", Bool),
        ],
    ),
    res(
        "items",
        "items",
        Tier::Low,
        true,
        &[col("name", "/name", Text)],
    ),
    res(
        "expense_categories",
        "expensecategories",
        Tier::Low,
        true,
        &[col("name", "/name", Text)],
    ),
    res(
        "bank_accounts",
        "bankaccounts",
        Tier::Low,
        false,
        &[col("name", "/name", Text), col("type", "/type", Text)],
    ),
    res(
        "custom_fields_company",
        "customfields/company",
        Tier::Low,
        false,
        &[
            col("label", "/label", Text),
            col("value_type", "/value_type", Text),
        ],
    )
    .read_by_id_at("customfields"),
    res(
        "custom_fields_matter",
        "customfields/matter",
        Tier::Low,
        false,
        &[
            col("label", "/label", Text),
            col("value_type", "/value_type", Text),
        ],
    )
    .read_by_id_at("customfields"),
    res(
        "custom_fields_contact",
        "customfields/contact",
        Tier::Low,
        false,
        &[
            col("label", "/label", Text),
            col("value_type", "/value_type", Text),
        ],
    )
    .read_by_id_at("customfields"),
    res(
        "relationships",
        "relationships",
        Tier::Low,
        false,
        &[
            col("contact_id", "/contact_ref/id", Text),
            MATTER,
            col("name", "/name", Text),
        ],
    ),
    res(
        "files",
        "files",
        Tier::Low,
        true,
        &[ACCOUNT, MATTER, col("file_name", "/file_name", Text)],
    ),
    full(
        "messages",
        "messages",
        "id",
        &[
            col("account_id", "/account_id", Text),
            col("matter_id", "/matter_id", Text),
            col("contact_id", "/contact_id", Text),
            col("sent_date", "/sent_date", Time),
        ],
    ),
    full("tags_account", "tags/account", "name", &[]),
    full("tags_matter", "tags/matter", "name", &[]),
    full("tags_activity", "tags/activity", "name", &[]),
];

/// Finds a resource by its table name or its API path (`call_logs` or `calllogs`), case-insensitively.
pub fn find(name: &str) -> Option<&'static Resource> {
    let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
    RESOURCES
        .iter()
        .find(|r| r.name == wanted || r.path == wanted || r.path.replace('/', "_") == wanted)
}

/// The error for an unknown resource name, listing the valid ones.
pub fn unknown(name: &str) -> String {
    let names: Vec<&str> = RESOURCES.iter().map(|r| r.name).collect();
    format!("unknown resource `{name}`: use one of {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_unique_and_findable() {
        let mut names = std::collections::HashSet::new();
        for r in RESOURCES {
            assert!(names.insert(r.name), "duplicate {}", r.name);
            assert_eq!(find(r.name).map(|f| f.name), Some(r.name));
            assert_eq!(find(r.path).map(|f| f.name), Some(r.name));
        }
        assert_eq!(RESOURCES.len(), 26);
        assert_eq!(find("CallLogs").map(|r| r.name), Some("call_logs"));
        // A partition names one of its resource's own typed columns, a time.
        for r in RESOURCES.iter().filter(|r| r.partition.is_some()) {
            let i = r.partition_column().unwrap_or_else(|| panic!("{}", r.name));
            assert_eq!(r.columns[i].ty, ColumnType::Time, "{}", r.name);
        }
        assert_eq!(RESOURCES.iter().filter(|r| r.by_id.is_none()).count(), 4);
        // What the spec marks single-GET-only: emails' body_html, payments' Payment_Detail.
        let details: Vec<&str> = RESOURCES
            .iter()
            .filter(|r| r.details)
            .map(|r| r.name)
            .collect();
        assert_eq!(details, ["emails", "payments"]);
        assert!(RESOURCES.iter().all(|r| !r.details || r.by_id.is_some()));
        assert!(find("widgets").is_none());
        assert!(unknown("widgets").contains("matters"));
    }
}
