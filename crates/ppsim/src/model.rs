//! The v2 resources: their list names, field order, timestamps and filters
//! (practicepanther-api.md §2 and §4.4).

use uuid::Uuid;

/// Every list resource of v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Res {
    Accounts,
    Contacts,
    Matters,
    Tasks,
    Events,
    Notes,
    CallLogs,
    Emails,
    TimeEntries,
    Expenses,
    FlatFees,
    Invoices,
    Payments,
    Users,
    CfCompany,
    CfMatter,
    CfContact,
    TagsAccount,
    TagsMatter,
    TagsActivity,
    Relationships,
    Files,
    Items,
    ExpenseCategories,
    BankAccounts,
    Messages,
}

impl Res {
    pub const ALL: [Res; 26] = [
        Res::Accounts,
        Res::Contacts,
        Res::Matters,
        Res::Tasks,
        Res::Events,
        Res::Notes,
        Res::CallLogs,
        Res::Emails,
        Res::TimeEntries,
        Res::Expenses,
        Res::FlatFees,
        Res::Invoices,
        Res::Payments,
        Res::Users,
        Res::CfCompany,
        Res::CfMatter,
        Res::CfContact,
        Res::TagsAccount,
        Res::TagsMatter,
        Res::TagsActivity,
        Res::Relationships,
        Res::Files,
        Res::Items,
        Res::ExpenseCategories,
        Res::BankAccounts,
        Res::Messages,
    ];

    pub fn idx(self) -> usize {
        self as usize
    }

    /// The resource for a list name (the path after `/api/v2/`), case-insensitively.
    pub fn from_name(name: &str) -> Option<Res> {
        let n = name.trim_matches('/').to_ascii_lowercase();
        Res::ALL.into_iter().find(|r| r.spec().name == n)
    }

    pub fn spec(self) -> &'static Spec {
        &SPECS[self.idx()]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn is_tag(self) -> bool {
        matches!(self, Res::TagsAccount | Res::TagsMatter | Res::TagsActivity)
    }
}

/// The default value a field takes when a created record omits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Def {
    Null,
    Arr,
    False,
    Zero,
    /// `created_at`, rendered from the record's hidden tick count.
    Created,
    /// `updated_at`, likewise.
    Updated,
    /// `primary_contact` on accounts: rendered from the contacts table.
    PrimaryContact,
    /// `other_contacts` on accounts.
    OtherContacts,
}

/// How (and whether) a resource shows its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamps {
    /// `created_at`/`updated_at` without an offset, trimmed fraction.
    Naive,
    /// Messages: `Z` and 7 digits.
    Zulu7,
    /// Not rendered (contacts, relationships, custom fields, bank accounts) but kept and filtered on.
    Hidden,
}

/// What a query parameter filters on.
#[derive(Clone, Copy, Debug)]
pub enum Filt {
    CreatedSince,
    UpdatedSince,
    /// `data[field].id == value` (a uuid).
    Ref(&'static str),
    /// `data[outer][inner].id == value` (relationships: `contact_ref.account_ref.id`).
    Ref2(&'static str, &'static str),
    /// Any element of the array `data[field]` has `.id == value`.
    AnyRef(&'static str),
    /// `hidden[key]` (a string or array of strings) contains value (a uuid).
    HiddenId(&'static str),
    /// Contacts: the owning account's `assigned_to_users` contains value.
    AccountAssigned,
    /// `data[field] == value`, value one of the enum's names (case-insensitive, as .NET binds enums).
    Enum(&'static str, &'static [&'static str]),
    /// `data[outer][inner] == value`, enum.
    Enum2(&'static str, &'static str, &'static [&'static str]),
    /// Business date `data[field] >= value`.
    DateFrom(&'static str),
    /// Business date `data[field] <= value`.
    DateTo(&'static str),
    /// Case-insensitive substring of any of these fields.
    Search(&'static [&'static str]),
    /// `data["tags"]` contains value (case-insensitive).
    Tag,
    /// The tags of the record's account (an account's own tags for accounts).
    AccountTag,
    /// Case-insensitive equality with `data[field]`.
    TextEq(&'static str),
    /// Contacts: the owning account's `company_name` equals value.
    AccountCompany,
    /// Accepted and validated against the enum, but changes nothing (`apiConsumer`).
    Ignored(&'static [&'static str]),
}

pub struct Spec {
    /// Lowercase list path after `/api/v2/`.
    pub name: &'static str,
    /// Rendered fields, in the spec's order.
    pub fields: &'static [(&'static str, Def)],
    /// Fields rendered by GET-by-id only (`body_html`, `refundedAmount`).
    pub single_only: &'static [&'static str],
    pub stamps: Stamps,
    /// Query parameters this list takes (matched case-insensitively).
    pub filters: &'static [(&'static str, Filt)],
    /// Whether `GET /api/v2/{name}/{id}` exists.
    pub by_id: bool,
}

const CREATED: (&str, Def) = ("created_at", Def::Created);
const UPDATED: (&str, Def) = ("updated_at", Def::Updated);

const CONTACT_STATUS: &[&str] = &["Active", "Archived"];
const MATTER_STATUS: &[&str] = &["Closed", "Pending", "Open", "Archived"];
const TASK_STATUS: &[&str] = &["NotCompleted", "InProgress", "Completed", "Conditional"];
const BANK_TYPES: &[&str] = &["Operating", "Trust", "CreditCard"];
const API_CONSUMER: &[&str] = &["Unknown", "Zapier"];

const SINCE: [(&str, Filt); 2] = [
    ("created_since", Filt::CreatedSince),
    ("updated_since", Filt::UpdatedSince),
];

macro_rules! filters {
    ($($name:literal => $f:expr),* $(,)?) => {
        &[("created_since", Filt::CreatedSince), ("updated_since", Filt::UpdatedSince), $(($name, $f)),*]
    };
}

static SPECS: [Spec; 26] = [
    Spec {
        name: "accounts",
        fields: &[
            ("id", Def::Null),
            ("display_name", Def::Null),
            ("number", Def::Zero),
            ("company_name", Def::Null),
            ("address_street_1", Def::Null),
            ("address_street_2", Def::Null),
            ("address_city", Def::Null),
            ("address_state", Def::Null),
            ("address_country", Def::Null),
            ("address_zip_code", Def::Null),
            ("tags", Def::Arr),
            ("company_custom_field_values", Def::Arr),
            ("assigned_to_users", Def::Arr),
            CREATED,
            UPDATED,
            ("notes", Def::Null),
            ("primary_contact", Def::PrimaryContact),
            ("other_contacts", Def::OtherContacts),
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "assigned_to_user_id" => Filt::AnyRef("assigned_to_users"),
            "search_text" => Filt::Search(&["display_name", "company_name"]),
            "account_tag" => Filt::AccountTag,
            "apiconsumer" => Filt::Ignored(API_CONSUMER),
        ],
        by_id: true,
    },
    Spec {
        name: "contacts",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("is_primary_contact", Def::False),
            ("display_name", Def::Null),
            ("first_name", Def::Null),
            ("middle_name", Def::Null),
            ("last_name", Def::Null),
            ("phone_mobile", Def::Null),
            ("phone_home", Def::Null),
            ("phone_fax", Def::Null),
            ("phone_work", Def::Null),
            ("email", Def::Null),
            ("notes", Def::Null),
            ("custom_field_values", Def::Arr),
            ("status", Def::Null),
        ],
        single_only: &[],
        stamps: Stamps::Hidden,
        filters: filters![
            "assigned_to_user_id" => Filt::AccountAssigned,
            "account_id" => Filt::Ref("account_ref"),
            "status" => Filt::Enum("status", CONTACT_STATUS),
            "search_text" => Filt::Search(&["display_name", "email"]),
            "account_tag" => Filt::AccountTag,
            "company_name" => Filt::AccountCompany,
        ],
        by_id: true,
    },
    Spec {
        name: "matters",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("number", Def::Zero),
            ("display_name", Def::Null),
            ("name", Def::Null),
            ("notes", Def::Null),
            ("rate", Def::Null),
            ("open_date", Def::Null),
            ("close_date", Def::Null),
            ("statute_of_limitation_date", Def::Null),
            ("tags", Def::Arr),
            ("status", Def::Null),
            ("assigned_to_users", Def::Arr),
            ("custom_field_values", Def::Arr),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "assigned_to_user_id" => Filt::AnyRef("assigned_to_users"),
            "account_id" => Filt::Ref("account_ref"),
            "status" => Filt::Enum("status", MATTER_STATUS),
            "search_text" => Filt::Search(&["display_name", "name"]),
            "account_tag" => Filt::AccountTag,
            "matter_tag" => Filt::Tag,
        ],
        by_id: true,
    },
    Spec {
        name: "tasks",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("subject", Def::Null),
            ("notes", Def::Null),
            ("priority", Def::Null),
            ("status", Def::Null),
            ("due_date", Def::Null),
            ("assigned_to_users", Def::Arr),
            ("assigned_to_contacts", Def::Arr),
            ("tags", Def::Arr),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "assigned_to_user_id" => Filt::AnyRef("assigned_to_users"),
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "status" => Filt::Enum("status", TASK_STATUS),
            "due_date_from" => Filt::DateFrom("due_date"),
            "due_date_to" => Filt::DateTo("due_date"),
            "activity_tag" => Filt::Tag,
        ],
        by_id: true,
    },
    Spec {
        name: "events",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("subject", Def::Null),
            ("location", Def::Null),
            ("notes", Def::Null),
            ("is_all_day", Def::False),
            ("start_date_time", Def::Null),
            ("end_date_time", Def::Null),
            ("tags", Def::Arr),
            ("assigned_to_users", Def::Arr),
            ("assigned_to_contacts", Def::Arr),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "assigned_to_user_id" => Filt::AnyRef("assigned_to_users"),
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "date_from" => Filt::DateFrom("start_date_time"),
            "date_to" => Filt::DateTo("start_date_time"),
            "activity_tag" => Filt::Tag,
        ],
        by_id: true,
    },
    Spec {
        name: "notes",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("subject", Def::Null),
            ("note", Def::Null),
            ("assigned_to_users", Def::Arr),
            ("date", Def::Null),
            ("tags", Def::Arr),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "assigned_to_user_id" => Filt::AnyRef("assigned_to_users"),
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "date_from" => Filt::DateFrom("date"),
            "date_to" => Filt::DateTo("date"),
            "activity_tag" => Filt::Tag,
        ],
        by_id: true,
    },
    Spec {
        name: "calllogs",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("subject", Def::Null),
            ("duration", Def::Zero),
            ("notes", Def::Null),
            ("date", Def::Null),
            ("call_direction", Def::Null),
            ("assigned_to_users", Def::Arr),
            ("tags", Def::Arr),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "assigned_to_user_id" => Filt::AnyRef("assigned_to_users"),
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "date_from" => Filt::DateFrom("date"),
            "date_to" => Filt::DateTo("date"),
            "activity_tag" => Filt::Tag,
        ],
        by_id: true,
    },
    Spec {
        name: "emails",
        fields: &[
            ("id", Def::Null),
            ("subject", Def::Null),
            ("cc", Def::Arr),
            ("to", Def::Arr),
            ("from", Def::Null),
            ("body_text", Def::Null),
            ("body_html", Def::Null),
            ("external_message_id", Def::Null),
            ("external_thread_id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("date", Def::Null),
            ("tags", Def::Arr),
            ("attachments", Def::Arr),
            CREATED,
            UPDATED,
        ],
        single_only: &["body_html"],
        stamps: Stamps::Naive,
        filters: filters![
            // Email has no assigned users in its payload; the assignment is kept hidden.
            "assigned_to_user_id" => Filt::HiddenId("assigned_user_ids"),
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "activity_tag" => Filt::Tag,
            "external_message_id" => Filt::TextEq("external_message_id"),
        ],
        by_id: true,
    },
    Spec {
        name: "timeentries",
        fields: &[
            ("id", Def::Null),
            ("is_billable", Def::False),
            ("is_billed", Def::False),
            ("date", Def::Null),
            ("hours", Def::Zero),
            ("rate", Def::Zero),
            ("description", Def::Null),
            ("private_notes", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("billed_by_user_ref", Def::Null),
            ("item_ref", Def::Null),
            ("task_code", Def::Null),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "user_id" => Filt::Ref("billed_by_user_ref"),
            "item_id" => Filt::Ref("item_ref"),
            "date_from" => Filt::DateFrom("date"),
            "date_to" => Filt::DateTo("date"),
        ],
        by_id: true,
    },
    Spec {
        name: "expenses",
        fields: &[
            ("id", Def::Null),
            ("is_billable", Def::False),
            ("is_billed", Def::False),
            ("date", Def::Null),
            ("qty", Def::Zero),
            ("price", Def::Zero),
            ("amount", Def::Zero),
            ("description", Def::Null),
            ("private_notes", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("billed_by_user_ref", Def::Null),
            ("expense_category_ref", Def::Null),
            ("task_code", Def::Null),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "billed_by_user_id" => Filt::Ref("billed_by_user_ref"),
            "expense_category_id" => Filt::Ref("expense_category_ref"),
            "date_from" => Filt::DateFrom("date"),
            "date_to" => Filt::DateTo("date"),
        ],
        by_id: true,
    },
    Spec {
        name: "flatfees",
        fields: &[
            ("id", Def::Null),
            ("is_billable", Def::False),
            ("is_billed", Def::False),
            ("date", Def::Null),
            ("qty", Def::Zero),
            ("price", Def::Zero),
            ("description", Def::Null),
            ("private_notes", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("billed_by_user_ref", Def::Null),
            ("item_ref", Def::Null),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "user_id" => Filt::Ref("billed_by_user_ref"),
            "item_id" => Filt::Ref("item_ref"),
            "date_from" => Filt::DateFrom("date"),
            "date_to" => Filt::DateTo("date"),
        ],
        by_id: true,
    },
    Spec {
        name: "invoices",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("issue_date", Def::Null),
            ("due_date", Def::Null),
            ("items_time_entries", Def::Arr),
            ("items_expenses", Def::Arr),
            ("items_flat_fees", Def::Arr),
            ("subtotal", Def::Zero),
            ("tax", Def::Zero),
            ("discount", Def::Zero),
            ("total", Def::Zero),
            ("total_paid", Def::Zero),
            ("total_outstanding", Def::Zero),
            ("invoice_type", Def::Null),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "date_from" => Filt::DateFrom("issue_date"),
            "date_to" => Filt::DateTo("issue_date"),
        ],
        by_id: true,
    },
    Spec {
        name: "payments",
        fields: &[
            ("refundedAmount", Def::Zero),
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("number", Def::Zero),
            ("date", Def::Null),
            ("total_amount", Def::Zero),
            ("unapplied_amount", Def::Zero),
            ("notes", Def::Null),
            ("payee", Def::Null),
            ("to_print", Def::False),
            ("check_number", Def::Null),
            ("bank_account", Def::Null),
            CREATED,
            UPDATED,
            ("status", Def::Null),
        ],
        single_only: &["refundedAmount"],
        stamps: Stamps::Naive,
        filters: filters![
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "bank_account_id" => Filt::Ref("bank_account"),
            "bank_account_type" => Filt::Enum2("bank_account", "type", BANK_TYPES),
            "date_from" => Filt::DateFrom("date"),
            "date_to" => Filt::DateTo("date"),
        ],
        by_id: true,
    },
    Spec {
        name: "users",
        fields: &[
            ("id", Def::Null),
            ("is_active", Def::False),
            ("display_name", Def::Null),
            ("first_name", Def::Null),
            ("last_name", Def::Null),
            ("middle_name", Def::Null),
            ("email", Def::Null),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters!["email_address" => Filt::TextEq("email")],
        by_id: true,
    },
    cf_spec("customfields/company"),
    cf_spec("customfields/matter"),
    cf_spec("customfields/contact"),
    tag_spec("tags/account"),
    tag_spec("tags/matter"),
    tag_spec("tags/activity"),
    Spec {
        name: "relationships",
        fields: &[
            ("id", Def::Null),
            ("contact_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("name", Def::Null),
            ("notes", Def::Null),
        ],
        single_only: &[],
        stamps: Stamps::Hidden,
        filters: filters![
            "contact_id" => Filt::Ref("contact_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "account_id" => Filt::Ref2("contact_ref", "account_ref"),
        ],
        by_id: true,
    },
    Spec {
        name: "files",
        fields: &[
            ("id", Def::Null),
            ("account_ref", Def::Null),
            ("matter_ref", Def::Null),
            ("activity_ref", Def::Null),
            ("description", Def::Null),
            ("file_name", Def::Null),
            ("size", Def::Zero),
            ("content_type", Def::Null),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: filters![
            "search_text" => Filt::Search(&["file_name", "description"]),
            "account_id" => Filt::Ref("account_ref"),
            "matter_id" => Filt::Ref("matter_ref"),
            "activity_id" => Filt::Ref("activity_ref"),
            // File has no creator in its payload; kept hidden.
            "created_by_user_id" => Filt::HiddenId("created_by_user_id"),
        ],
        by_id: true,
    },
    Spec {
        name: "items",
        fields: &[
            ("id", Def::Null),
            ("name", Def::Null),
            ("code", Def::Null),
            ("description", Def::Null),
            ("rate", Def::Zero),
            CREATED,
            UPDATED,
        ],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: &SINCE,
        by_id: true,
    },
    Spec {
        name: "expensecategories",
        fields: &[("id", Def::Null), ("name", Def::Null), CREATED, UPDATED],
        single_only: &[],
        stamps: Stamps::Naive,
        filters: &SINCE,
        by_id: true,
    },
    Spec {
        name: "bankaccounts",
        fields: &[("id", Def::Null), ("type", Def::Null), ("name", Def::Null)],
        single_only: &[],
        stamps: Stamps::Hidden,
        filters: &SINCE,
        by_id: true,
    },
    Spec {
        name: "messages",
        fields: &[
            ("id", Def::Null),
            ("sender", Def::Null),
            ("contact_id", Def::Null),
            ("contact", Def::Null),
            CREATED,
            UPDATED,
            ("type", Def::Null),
            ("matter_id", Def::Null),
            ("account_id", Def::Null),
            ("subject", Def::Null),
            ("body", Def::Null),
            ("sent_date", Def::Null),
            ("conversation_id", Def::Null),
            ("external_conversation_id", Def::Null),
            ("firm_text_phone_number", Def::Null),
            ("firm_location_name", Def::Null),
            ("user_name", Def::Null),
            ("user_email", Def::Null),
            ("sent_by_contact", Def::False),
        ],
        single_only: &[],
        stamps: Stamps::Zulu7,
        // Messages take no parameters at all: anything given is ignored.
        filters: &[],
        by_id: false,
    },
];

const fn cf_spec(name: &'static str) -> Spec {
    Spec {
        name,
        fields: &[
            ("id", Def::Null),
            ("label", Def::Null),
            ("value_type", Def::Null),
            ("dropdown_list_values", Def::Null),
            ("help_text", Def::Null),
            ("tooltip", Def::Null),
        ],
        single_only: &[],
        stamps: Stamps::Hidden,
        filters: &SINCE,
        // GET /customfields/{id} exists, shared by the three kinds (handled in routes).
        by_id: true,
    }
}

const fn tag_spec(name: &'static str) -> Spec {
    Spec {
        name,
        fields: &[("created_at", Def::Created), ("name", Def::Null)],
        single_only: &[],
        stamps: Stamps::Naive,
        // Tags take no parameters: anything given is ignored.
        filters: &[],
        by_id: false,
    }
}

/// SQL Server `uniqueidentifier` sort key: SQL Server compares the .NET byte layout in the order
/// 10..16, 8, 9, 6, 7, 4, 5, 0..4. In terms of the canonical (big-endian string) bytes `b` that is
/// `b[10..16], b[8], b[9], b[6], b[7], b[4], b[5], b[0], b[1], b[2], b[3]`:
/// the **last 6 bytes of the string decide first**, as the invoice capture in §3 shows.
pub fn guid_key(id: &Uuid) -> Vec<u8> {
    let b = id.as_bytes();
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&b[10..16]);
    k.extend_from_slice(&[b[8], b[9], b[6], b[7], b[4], b[5], b[0], b[1], b[2], b[3]]);
    k
}

/// The table key for a record id: GUID order for every resource, the name for tags.
pub fn table_key(res: Res, id: &str) -> Option<Vec<u8>> {
    if res.is_tag() {
        Some(id.as_bytes().to_vec())
    } else {
        Uuid::parse_str(id).ok().map(|u| guid_key(&u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_order_matches_sql_server_last_six_bytes_first() {
        // From §3: invoice ids ascend by their last group.
        let a = Uuid::parse_str("ffffffff-ffff-ffff-ffff-0009a2d6088d").unwrap();
        let b = Uuid::parse_str("00000000-0000-0000-0000-000b6ae3f13d").unwrap();
        let c = Uuid::parse_str("00000000-0000-0000-0000-000cfda12a1e").unwrap();
        assert!(guid_key(&a) < guid_key(&b));
        assert!(guid_key(&b) < guid_key(&c));
        // Then group 4 (bytes 8, 9), then group 3 (bytes 6, 7) ...
        let d = Uuid::parse_str("00000000-0000-0001-0000-000000000000").unwrap();
        let e = Uuid::parse_str("00000000-0000-0000-0001-000000000000").unwrap();
        assert!(guid_key(&d) < guid_key(&e));
    }

    #[test]
    fn names_round_trip_case_insensitively() {
        for r in Res::ALL {
            assert_eq!(Res::from_name(&r.name().to_uppercase()), Some(r));
        }
        assert_eq!(Res::from_name("Expenses"), Some(Res::Expenses));
    }
}
