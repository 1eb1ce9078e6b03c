//! The seed's firm: a deterministic, realistic 1031-exchange practice.
//!
//! Everything is drawn from one ChaCha8 stream seeded with `--seed`, in a fixed order, so
//! `(seed, scale, start)` decides every byte. The record builders here are also what the change
//! generator uses to create new records, so new data looks like old data.

use chrono::Duration;
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::model::Res;
use crate::store::{Rec, Store};
use crate::time::{TICKS_PER_SEC, TsStyle, format_ts, local_date, local_midnight, local_noon};

const DAY: i64 = 86_400 * TICKS_PER_SEC;
const HOUR: i64 = 3_600 * TICKS_PER_SEC;

/// Record counts at scale 1.0 (the seed's firm: 11,171 accounts).
pub struct Volumes;
impl Volumes {
    pub fn of(res: Res, scale: f64) -> usize {
        let scaled = |n: f64| ((n * scale).round() as usize).max(1);
        match res {
            Res::Accounts => scaled(11_171.0),
            Res::Matters => scaled(7_200.0),
            Res::Tasks => scaled(20_000.0),
            Res::Events => scaled(9_000.0),
            Res::Notes => scaled(15_000.0),
            Res::CallLogs => scaled(3_000.0),
            Res::Emails => scaled(12_000.0),
            Res::TimeEntries => scaled(25_000.0),
            Res::Expenses => scaled(4_000.0),
            Res::FlatFees => scaled(1_500.0),
            Res::Invoices => scaled(4_000.0),
            Res::Payments => scaled(3_500.0),
            Res::Relationships => scaled(2_000.0),
            Res::Files => scaled(6_000.0),
            Res::Messages => scaled(1_500.0),
            // Reference data does not grow with the firm's client count.
            Res::Users => 25,
            Res::Items => 40,
            Res::ExpenseCategories => EXPENSE_CATEGORIES.len(),
            Res::BankAccounts => BANK_ACCOUNTS.len(),
            Res::CfCompany | Res::CfMatter | Res::CfContact => 10,
            Res::TagsAccount | Res::TagsMatter | Res::TagsActivity => 12,
            Res::Contacts => 0, // made with accounts
        }
    }
}

pub fn new_uuid(rng: &mut impl RngCore) -> Uuid {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// Truncates an instant to the precision mix seen in real captures: mostly milliseconds
/// (`.393`, `.72`, `.4` once trailing zeros are trimmed), some whole seconds, a few 7-digit.
/// Never moves the instant to or before `floor` (keeps changes inside their interval).
pub fn stamp_precision(rng: &mut impl Rng, t: i64, floor: i64) -> i64 {
    let p: f64 = rng.random();
    let unit = if p < 0.72 {
        10_000 // 1 ms
    } else if p < 0.87 {
        TICKS_PER_SEC
    } else {
        1
    };
    let cut = t - t.rem_euclid(unit);
    if cut > floor { cut } else { t }
}

// ---------------------------------------------------------------------------------------------
// Names and vocabularies.

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Steven",
    "Ashley",
    "Paul",
    "Kimberly",
    "Andrew",
    "Emily",
    "Kenneth",
    "Donna",
    "Kevin",
    "Michelle",
    "Brian",
    "Carol",
    "George",
    "Amanda",
    "Edward",
    "Melissa",
    "Ronald",
    "Deborah",
    "Wei",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Raj",
    "Priya",
    "Carlos",
    "Sofia",
    "Miguel",
    "Lucia",
    "Ahmed",
    "Fatima",
    "Olga",
    "Dmitri",
    "Nguyen",
    "Linh",
    "Arash",
    "Leila",
];
const MIDDLE: &[&str] = &[
    "A.", "B.", "C.", "J.", "L.", "M.", "R.", "S.", "T.", "Lee", "Ann",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Wang",
    "Kim",
    "Park",
    "Patel",
    "Shah",
    "Tanaka",
    "Sato",
    "Cohen",
    "Levy",
    "O'Brien",
    "Murphy",
    "Sullivan",
    "Kowalski",
    "Novak",
    "Rossi",
    "Esposito",
    "Schmidt",
    "Mueller",
    "Dubois",
    "Moreau",
    "Haddad",
    "Karimi",
    "Ivanov",
    "Petrov",
    "Silva",
    "Santos",
    "Oliveira",
    "Tran",
    "Pham",
];
const STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Pacific Coast Hwy",
    "Sunset Blvd",
    "Jamboree Rd",
    "Harbor Blvd",
    "MacArthur Blvd",
    "Newport Blvd",
    "Irvine Center Dr",
    "Von Karman Ave",
    "El Camino Real",
    "Mission St",
    "Market St",
    "Wilshire Blvd",
    "Ventura Blvd",
    "Lincoln Ave",
    "Elm St",
    "Maple Dr",
    "Cedar Ln",
    "Palm Canyon Dr",
    "Ocean Ave",
    "Beach Blvd",
    "Bristol St",
    "Culver Dr",
    "Alton Pkwy",
    "Barranca Pkwy",
    "Laguna Canyon Rd",
    "Crown Valley Pkwy",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Irvine", "CA", "92618"),
    ("Newport Beach", "CA", "92660"),
    ("Costa Mesa", "CA", "92626"),
    ("Santa Ana", "CA", "92701"),
    ("Anaheim", "CA", "92805"),
    ("Huntington Beach", "CA", "92648"),
    ("Laguna Beach", "CA", "92651"),
    ("Tustin", "CA", "92780"),
    ("Orange", "CA", "92866"),
    ("Fullerton", "CA", "92832"),
    ("Los Angeles", "CA", "90012"),
    ("Pasadena", "CA", "91101"),
    ("Long Beach", "CA", "90802"),
    ("Torrance", "CA", "90501"),
    ("San Diego", "CA", "92101"),
    ("La Jolla", "CA", "92037"),
    ("Carlsbad", "CA", "92008"),
    ("Riverside", "CA", "92501"),
    ("Palm Springs", "CA", "92262"),
    ("San Francisco", "CA", "94105"),
    ("Oakland", "CA", "94612"),
    ("San Jose", "CA", "95113"),
    ("Sacramento", "CA", "95814"),
    ("Las Vegas", "NV", "89101"),
    ("Phoenix", "AZ", "85004"),
    ("Scottsdale", "AZ", "85251"),
    ("Seattle", "WA", "98101"),
    ("Austin", "TX", "78701"),
];
const COMPANY_SUFFIX: &[&str] = &[
    "Holdings LLC",
    "Properties LP",
    "Family Trust",
    "Investments LLC",
    "Real Estate Group",
    "Capital Partners",
    "Revocable Trust",
    "Ventures LLC",
    "Land Co.",
    "Realty Inc.",
];
const EXCHANGE_KINDS: &[&str] = &[
    "1031 Exchange",
    "1031 Exchange",
    "1031 Exchange",
    "Reverse Exchange",
    "Improvement Exchange",
    "DST Exchange",
    "Partial Exchange",
];
const RATES: &[&str] = &[
    "Flat Rate",
    "Flat Rate",
    "User Hourly Rate",
    "Item Price",
    "Contingency",
];
const TASK_SUBJECTS: &[&str] = &[
    "45-day identification deadline",
    "180-day exchange deadline",
    "Send exchange agreement to client",
    "Receive signed exchange agreement",
    "Obtain relinquished property closing statement",
    "Confirm wire of exchange proceeds",
    "Review identification letter",
    "Prepare assignment of purchase contract",
    "Send notice of assignment to escrow",
    "Order replacement property title report",
    "Confirm replacement property closing date",
    "Wire funds to replacement escrow",
    "Prepare Form 8824 summary",
    "Follow up with CPA",
    "Call client re: identification",
    "Review DST offering documents",
    "Request W-9 from client",
    "Close out exchange file",
    "Send closing letter",
    "Reconcile exchange account",
];
const EVENT_SUBJECTS: &[&str] = &[
    "Client consultation",
    "Exchange kickoff call",
    "Closing - relinquished property",
    "Closing - replacement property",
    "45-day deadline",
    "180-day deadline",
    "Call with escrow officer",
    "Meeting with CPA",
    "Signing appointment",
    "Webinar: 1031 basics",
];
const LOCATIONS: &[&str] = &[
    "Office - Conference Room A",
    "Office - Conference Room B",
    "Zoom",
    "Phone",
    "Client's office",
    "Escrow office",
];
const NOTE_SUBJECTS: &[&str] = &[
    "Intake notes",
    "Call summary",
    "Identification received",
    "Escrow update",
    "Client preferences",
    "Closing details",
    "Funds received",
    "Internal review",
];
const EMAIL_SUBJECTS: &[&str] = &[
    "Your 1031 exchange - next steps",
    "Exchange agreement for signature",
    "Identification deadline reminder",
    "Wire instructions (please call to verify)",
    "Closing statement received",
    "RE: Replacement property",
    "RE: Escrow instructions",
    "Exchange completed",
    "Question about boot",
    "FW: Title report",
];
const CALL_SUBJECTS: &[&str] = &[
    "Client check-in",
    "Escrow officer call",
    "Identification questions",
    "Referral from CPA",
    "Wire confirmation",
    "New exchange inquiry",
];
const TASK_CODES: &[&str] = &[
    "L110", "L120", "L130", "L210", "L250", "L310", "A101", "A104",
];
const RELATION_NAMES: &[&str] = &[
    "Escrow Officer",
    "Title Officer",
    "Buyer's Agent",
    "Seller's Agent",
    "CPA",
    "Attorney",
    "Lender",
    "Co-Owner",
    "Spouse",
];
const FILE_KINDS: &[(&str, &str, &str)] = &[
    ("Exchange Agreement", "pdf", "application/pdf"),
    ("Closing Statement", "pdf", "application/pdf"),
    ("Identification Letter", "pdf", "application/pdf"),
    (
        "Assignment",
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("Wire Confirmation", "pdf", "application/pdf"),
    ("Property Photo", "jpg", "image/jpeg"),
    (
        "Exchange Ledger",
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
];
pub const EXPENSE_CATEGORIES: &[&str] = &[
    "Courier",
    "Filing Fees",
    "Wire Fees",
    "Recording Fees",
    "Postage",
    "Travel",
    "Copies",
    "Notary",
    "Title Report",
    "Escrow Fee",
    "Overnight Delivery",
    "Bank Fee",
    "Appraisal",
    "Mileage",
    "Other",
];
pub const BANK_ACCOUNTS: &[(&str, &str)] = &[
    ("Operating", "Chase Operating"),
    ("Trust", "Qualified Intermediary Trust"),
    ("Trust", "Exchange Escrow Trust"),
    ("CreditCard", "AmEx Business"),
];
const ACCOUNT_TAGS: &[&str] = &[
    "VIP",
    "Repeat Client",
    "Referral",
    "Investor",
    "Attorney",
    "CPA",
    "Realtor",
    "Escrow",
    "Title",
    "Lender",
    "Out of State",
    "Do Not Contact",
];
const MATTER_TAGS: &[&str] = &[
    "Forward",
    "Reverse",
    "Improvement",
    "DST",
    "Partial",
    "Boot",
    "Identified",
    "Extended",
    "Closed Early",
    "Audit",
    "TIC",
    "Drop and Swap",
];
const ACTIVITY_TAGS: &[&str] = &[
    "Deadline",
    "45-Day",
    "180-Day",
    "Client Call",
    "Urgent",
    "Follow-up",
    "Docs",
    "Wire",
    "Escrow",
    "Signature",
    "Review",
    "Internal",
];
type CfDef = (&'static str, &'static str, &'static str);
const CF_COMPANY: &[CfDef] = &[
    ("EIN", "TextBox", ""),
    (
        "Entity Type",
        "DropDownList",
        "LLC, LP, Trust, Corporation, Partnership",
    ),
    ("State of Formation", "TextBox", ""),
    ("Formation Date", "Date", ""),
    (
        "Tax Status",
        "DropDownList",
        "Disregarded, Partnership, S-Corp, C-Corp",
    ),
    ("Authorized Signer", "Contact", ""),
    ("Annual Exchange Volume", "Currency", ""),
    ("Repeat Client", "Checkbox", ""),
    ("Website", "TextBox", ""),
    ("Company Notes", "TextEditor", ""),
];
const CF_MATTER: &[CfDef] = &[
    ("Relinquished Property", "TextBox", ""),
    ("Sale Price", "Currency", ""),
    ("Relinquished Closing Date", "Date", ""),
    ("45 Day Deadline", "Date", ""),
    ("180 Day Deadline", "Date", ""),
    (
        "Exchange Type",
        "DropDownList",
        "Forward, Reverse, Improvement, DST",
    ),
    ("Escrow Number", "TextBox", ""),
    ("Escrow Officer", "Contact", ""),
    ("Reverse Exchange", "Checkbox", ""),
    ("Exchange Balance", "Number", ""),
];
const CF_CONTACT: &[CfDef] = &[
    ("Date of Birth", "Date", ""),
    ("SSN Last 4", "TextBox", ""),
    (
        "Preferred Contact Method",
        "DropDownList",
        "Email, Phone, Text, Mail",
    ),
    (
        "Referral Source",
        "DropDownList",
        "CPA, Attorney, Realtor, Web, Past Client",
    ),
    ("Spouse", "TextBox", ""),
    ("Do Not Email", "Checkbox", ""),
    ("Client Since", "DateTime", ""),
    ("Net Worth", "Currency", ""),
    ("Attorney", "Contact", ""),
    ("Contact Notes", "TextEditor", ""),
];

// ---------------------------------------------------------------------------------------------
// Context: what new records can refer to.

#[derive(Clone)]
pub struct AccRef {
    pub id: String,
    pub display: String,
    pub created: i64,
}

#[derive(Clone)]
pub struct MatRef {
    pub id: String,
    pub display: String,
    pub account: usize,
    pub created: i64,
}

/// Everything a new record may point at, read from the store.
#[derive(Default)]
pub struct Ctx {
    pub users: Vec<Value>,
    pub accounts: Vec<AccRef>,
    pub matters: Vec<MatRef>,
    pub contacts: Vec<Value>,
    pub items: Vec<(String, String, f64)>,
    pub categories: Vec<Value>,
    pub banks: Vec<Value>,
    pub cf: [Vec<(String, String, String, String)>; 3],
    pub tasks: Vec<(String, String)>,
    pub next_account_number: i64,
    pub next_matter_number: i64,
    pub next_payment_number: i64,
}

/// `v[k]` as a string ("" when absent).
pub fn s(v: &Map<String, Value>, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_owned()
}

impl Ctx {
    /// The resources whose records the context names: deleting one of them outdates it.
    pub const REFERS_TO: [Res; 4] = [Res::Accounts, Res::Matters, Res::Contacts, Res::Tasks];
    /// How many tasks a new record may be attached to.
    pub const TASKS: usize = 2000;

    pub fn from_store(st: &Store) -> Ctx {
        let mut c = Ctx {
            next_account_number: 1000,
            next_matter_number: 1000,
            next_payment_number: 1,
            ..Ctx::default()
        };
        for r in st.table(Res::Users).values() {
            c.users.push(json!({"id": r.id, "display_name": s(&r.data, "display_name"), "email_address": s(&r.data, "email")}));
        }
        let mut acc_index = std::collections::HashMap::new();
        for r in st.table(Res::Accounts).values() {
            acc_index.insert(r.id.clone(), c.accounts.len());
            c.accounts.push(AccRef {
                id: r.id.clone(),
                display: s(&r.data, "display_name"),
                created: r.created,
            });
            let n = r.data.get("number").and_then(Value::as_i64).unwrap_or(0);
            c.next_account_number = c.next_account_number.max(n + 1);
        }
        for r in st.table(Res::Matters).values() {
            let acc = r
                .ref_id("account_ref")
                .and_then(|a| acc_index.get(a))
                .copied();
            if let Some(account) = acc {
                c.matters.push(MatRef {
                    id: r.id.clone(),
                    display: s(&r.data, "display_name"),
                    account,
                    created: r.created,
                });
            }
            let n = r.data.get("number").and_then(Value::as_i64).unwrap_or(0);
            c.next_matter_number = c.next_matter_number.max(n + 1);
        }
        for r in st.table(Res::Contacts).values() {
            c.contacts.push(contact_ref(r));
        }
        for r in st.table(Res::Items).values() {
            let rate = r.data.get("rate").and_then(Value::as_f64).unwrap_or(0.0);
            c.items.push((r.id.clone(), s(&r.data, "name"), rate));
        }
        for r in st.table(Res::ExpenseCategories).values() {
            c.categories.push(json!({"id": r.id, "name": s(&r.data, "name"),
                "created_at": format_ts(r.created, TsStyle::Naive), "updated_at": format_ts(r.updated, TsStyle::Naive)}));
        }
        for r in st.table(Res::BankAccounts).values() {
            c.banks
                .push(json!({"id": r.id, "type": s(&r.data, "type"), "name": s(&r.data, "name")}));
        }
        for (i, res) in [Res::CfCompany, Res::CfMatter, Res::CfContact]
            .into_iter()
            .enumerate()
        {
            for r in st.table(res).values() {
                c.cf[i].push((
                    r.id.clone(),
                    s(&r.data, "label"),
                    s(&r.data, "value_type"),
                    s(&r.data, "dropdown_list_values"),
                ));
            }
        }
        for r in st.table(Res::Tasks).values().take(Ctx::TASKS) {
            c.tasks.push((r.id.clone(), s(&r.data, "subject")));
        }
        for r in st.table(Res::Payments).values() {
            let n = r.data.get("number").and_then(Value::as_i64).unwrap_or(0);
            c.next_payment_number = c.next_payment_number.max(n + 1);
        }
        c
    }
}

pub fn contact_ref(r: &Rec) -> Value {
    json!({
        "id": r.id,
        "display_name": s(&r.data, "display_name"),
        "account_ref": r.data.get("account_ref").cloned().unwrap_or(Value::Null),
    })
}

// ---------------------------------------------------------------------------------------------
// Builders.

/// Draws record contents. `now` is the instant the record is created at.
pub struct Builder<'a, R: Rng> {
    pub rng: &'a mut R,
    pub ctx: &'a mut Ctx,
}

fn pick<'a, T, R: Rng>(rng: &mut R, xs: &'a [T]) -> &'a T {
    xs.choose(rng).expect("non-empty vocabulary")
}

fn money(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    (rng.random_range(lo..hi) * 100.0).round() / 100.0
}

impl<R: Rng> Builder<'_, R> {
    fn maybe<T>(&mut self, p: f64, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.rng.random_bool(p) {
            Some(f(self))
        } else {
            None
        }
    }

    fn users(&mut self, max: usize) -> Value {
        let n = self.rng.random_range(1..=max);
        let mut v: Vec<Value> = self
            .ctx
            .users
            .choose_multiple(self.rng, n)
            .cloned()
            .collect();
        v.dedup();
        Value::Array(v)
    }

    fn user(&mut self) -> Value {
        pick(self.rng, &self.ctx.users).clone()
    }

    fn tags(&mut self, vocab: &[&str], p: f64) -> Value {
        let mut out = vec![];
        if self.rng.random_bool(p) {
            let n = self.rng.random_range(1..=2);
            for t in vocab.choose_multiple(self.rng, n) {
                out.push(json!(t));
            }
        }
        Value::Array(out)
    }

    fn phone(&mut self) -> String {
        let area = pick(
            self.rng,
            &[949, 714, 562, 310, 213, 619, 858, 415, 702, 480],
        );
        format!(
            "({area}) {:03}-{:04}",
            self.rng.random_range(200..999),
            self.rng.random_range(0..10_000)
        )
    }

    fn address(&mut self) -> String {
        format!(
            "{} {}",
            self.rng.random_range(100..25_000),
            pick(self.rng, STREETS)
        )
    }

    /// A business date (firm-local noon, as UTC instant) `days` after an instant.
    fn noon_after(&self, t: i64, days: i64) -> String {
        format_ts(local_noon(local_date(t + days * DAY)), TsStyle::Naive)
    }

    fn midnight_after(&self, t: i64, days: i64) -> String {
        format_ts(local_midnight(local_date(t + days * DAY)), TsStyle::Naive)
    }

    /// `opened`: a matter's creation instant. An exchange's dates follow from it as a 1031
    /// exchange's do: the relinquished property closes within a month of opening, the 45-day
    /// identification and the 180-day exchange deadlines count from that closing. Other date
    /// fields (and records without an anchor) get any date of the last decade.
    fn cfvs(&mut self, kind: usize, n: usize, opened: Option<i64>) -> Value {
        let defs = self.ctx.cf[kind].clone();
        let mut out = vec![];
        for (id, label, vt, dd) in defs.iter().take(n) {
            if self.rng.random_bool(0.25) {
                continue; // fields the firm never set are omitted
            }
            let mut v = json!({
                "custom_field_ref": {"id": id, "label": label, "value_type": vt},
                "value_boolean": false, "contact_ref": null, "value_date_time": null,
                "value_number": null, "value_string": null,
            });
            match vt.as_str() {
                "Checkbox" => v["value_boolean"] = json!(self.rng.random_bool(0.3)),
                "Contact" => {
                    if let Some(c) = self.ctx.contacts.choose(self.rng) {
                        v["contact_ref"] = c.clone();
                    }
                }
                "Date" | "DateTime" => {
                    // Drawn whatever the field, so the rest of the dataset is the same either way.
                    let r = self.rng.random_range(0..4000);
                    let after_closing = match label.as_str() {
                        "Relinquished Closing Date" => Some(0),
                        "45 Day Deadline" => Some(45),
                        "180 Day Deadline" => Some(180),
                        _ => None,
                    };
                    v["value_date_time"] = match (opened, after_closing) {
                        (Some(t), Some(days)) => {
                            // The closing day is the same for the matter's three fields.
                            let closing = closing_offset(t);
                            json!(self.noon_after(t, closing + days))
                        }
                        _ => {
                            let d = chrono::NaiveDate::from_ymd_opt(2015, 1, 1).unwrap_or_default()
                                + Duration::days(r);
                            json!(format_ts(local_noon(d), TsStyle::Naive))
                        }
                    };
                }
                "Number" => v["value_number"] = json!(money(self.rng, 0.0, 2_000_000.0)),
                "Currency" => v["value_number"] = json!(money(self.rng, 150_000.0, 9_000_000.0)),
                "DropDownList" => {
                    let opts: Vec<&str> = dd.split(',').map(str::trim).collect();
                    v["value_string"] = json!(pick(self.rng, &opts));
                }
                "TextEditor" => {
                    v["value_string"] = json!(format!(
                        "<p>{}</p>",
                        pick(
                            self.rng,
                            &[
                                "Prefers email.",
                                "Call before 10am.",
                                "Spanish speaker.",
                                "Works with CPA on file."
                            ]
                        )
                    ))
                }
                _ => {
                    v["value_string"] = json!(format!(
                        "{}-{}",
                        label
                            .chars()
                            .filter(|c| c.is_ascii_uppercase())
                            .collect::<String>(),
                        self.rng.random_range(1000..99_999)
                    ))
                }
            }
            out.push(v);
        }
        Value::Array(out)
    }

    /// A person's contact fields (no id, account_ref or primary flag: the store sets those).
    pub fn contact(&mut self, last: Option<&str>) -> Value {
        let first = *pick(self.rng, FIRST);
        let last = match last {
            Some(l) => l.to_owned(),
            None => (*pick(self.rng, LAST)).to_owned(),
        };
        let middle = self.maybe(0.3, |b| *pick(b.rng, MIDDLE));
        let email = format!(
            "{}.{}{}@{}",
            first.to_lowercase(),
            last.to_lowercase().replace('\'', ""),
            self.rng.random_range(1..99),
            pick(
                self.rng,
                &[
                    "gmail.com",
                    "yahoo.com",
                    "outlook.com",
                    "icloud.com",
                    "aol.com"
                ]
            )
        );
        let mobile = self.maybe(0.85, |b| b.phone());
        let home = self.maybe(0.2, |b| b.phone());
        let work = self.maybe(0.3, |b| b.phone());
        let cfv = self.cfvs(2, 4, None);
        json!({
            "first_name": first, "middle_name": middle, "last_name": last,
            "display_name": format!("{first} {last}"),
            "phone_mobile": mobile, "phone_home": home, "phone_fax": null, "phone_work": work,
            "email": email,
            "notes": if self.rng.random_bool(0.2) { json!("Referred by CPA.") } else { Value::Null },
            "custom_field_values": cfv,
            "status": if self.rng.random_bool(0.93) { "Active" } else { "Archived" },
        })
    }

    /// An account with its primary contact (and sometimes others), as `Store::create` takes it.
    pub fn account(&mut self) -> Value {
        let number = self.ctx.next_account_number;
        self.ctx.next_account_number += 1;
        let last = *pick(self.rng, LAST);
        let company = self.rng.random_bool(0.15);
        let company_name = company.then(|| format!("{last} {}", pick(self.rng, COMPANY_SUFFIX)));
        let (city, state, zip) = *pick(self.rng, CITIES);
        let primary = self.contact(Some(last));
        let display = match &company_name {
            Some(c) => c.clone(),
            None => format!("{last}, {}", primary["first_name"].as_str().unwrap_or("")),
        };
        let others: Vec<Value> = if self.rng.random_bool(0.02) {
            (0..self.rng.random_range(1..=2))
                .map(|_| self.contact(None))
                .collect()
        } else {
            vec![]
        };
        let street = self.address();
        let cfv = if company {
            self.cfvs(0, 10, None)
        } else {
            json!([])
        };
        let tags = self.tags(ACCOUNT_TAGS, 0.2);
        let users = self.users(2);
        json!({
            "display_name": display, "number": number, "company_name": company_name,
            "address_street_1": street, "address_street_2": if self.rng.random_bool(0.15) { json!(format!("Suite {}", self.rng.random_range(100..900))) } else { Value::Null },
            "address_city": city, "address_state": state, "address_country": "United States",
            "address_zip_code": zip, "tags": tags, "company_custom_field_values": cfv,
            "assigned_to_users": users,
            "notes": if self.rng.random_bool(0.3) { json!("Client since first exchange.") } else { Value::Null },
            "primary_contact": primary, "other_contacts": others,
        })
    }

    fn acc_ref(&self, i: usize) -> Value {
        let a = &self.ctx.accounts[i];
        json!({"id": a.id, "display_name": a.display})
    }

    fn mat_ref(&self, i: usize) -> Value {
        let m = &self.ctx.matters[i];
        json!({"id": m.id, "display_name": m.display})
    }

    pub fn matter(&mut self, account: usize, created: i64, now: i64) -> Value {
        let number = self.ctx.next_matter_number;
        self.ctx.next_matter_number += 1;
        let acc = self.ctx.accounts[account].display.clone();
        let last = acc.split([',', ' ']).next().unwrap_or("Client").to_owned();
        let addr = self.address();
        let (city, _, _) = *pick(self.rng, CITIES);
        let name = format!(
            "{last} - {} - {addr}, {city}",
            pick(self.rng, EXCHANGE_KINDS)
        );
        let age_days = (now - created) / DAY;
        // Old exchanges are closed; 180 days is the statutory maximum.
        let status = if age_days > 200 {
            *pick(
                self.rng,
                &["Closed", "Closed", "Closed", "Closed", "Archived", "Open"],
            )
        } else {
            *pick(self.rng, &["Open", "Open", "Open", "Pending"])
        };
        let close = (status == "Closed" || status == "Archived").then(|| {
            let d = self.rng.random_range(30..190);
            self.noon_after(created, d)
        });
        let sol = self.maybe(0.05, |b| b.noon_after(created, 365 * 3));
        let cfv = self.cfvs(1, 10, Some(created));
        let tags = self.tags(MATTER_TAGS, 0.3);
        let users = self.users(3);
        json!({
            "account_ref": self.acc_ref(account), "number": number,
            "display_name": format!("{number} - {name}"), "name": name,
            "notes": if self.rng.random_bool(0.4) { json!("<p>Exchange opened; awaiting closing statement.</p>") } else { Value::Null },
            "rate": pick(self.rng, RATES), "open_date": self.noon_after(created, 0),
            "close_date": close, "statute_of_limitation_date": sol, "tags": tags,
            "status": status, "assigned_to_users": users, "custom_field_values": cfv,
        })
    }

    /// The account and matter refs of an activity: a matter's, or (sometimes) an account only.
    fn owner(&mut self) -> (Value, Value, i64) {
        if !self.ctx.matters.is_empty() && self.rng.random_bool(0.9) {
            let m = self.rng.random_range(0..self.ctx.matters.len());
            let a = self.ctx.matters[m].account;
            (
                self.acc_ref(a),
                self.mat_ref(m),
                self.ctx.matters[m].created,
            )
        } else {
            let a = self.rng.random_range(0..self.ctx.accounts.len());
            (self.acc_ref(a), Value::Null, self.ctx.accounts[a].created)
        }
    }

    /// A creation instant for a record owned by something created at `after`, before `now`.
    pub fn created_between(&mut self, after: i64, now: i64) -> i64 {
        let lo = after.min(now - HOUR);
        // Skew towards recent: most activity concerns live exchanges.
        let u: f64 = self.rng.random::<f64>().powf(0.5);
        lo + ((now - HOUR - lo) as f64 * u) as i64
    }

    fn assigned_contacts(&mut self, p: f64) -> Value {
        match self.maybe(p, |b| b.ctx.contacts.choose(b.rng).cloned()) {
            Some(Some(c)) => json!([c]),
            _ => json!([]),
        }
    }

    pub fn activity(&mut self, res: Res, now: i64, fixed_created: Option<i64>) -> (Value, i64) {
        let (acc, mat, owner_created) = self.owner();
        let created = fixed_created.unwrap_or_else(|| self.created_between(owner_created, now));
        let v = match res {
            Res::Tasks => {
                let open = now - created < 120 * DAY;
                let status = if open {
                    *pick(
                        self.rng,
                        &[
                            "NotCompleted",
                            "NotCompleted",
                            "InProgress",
                            "Completed",
                            "Conditional",
                        ],
                    )
                } else {
                    *pick(
                        self.rng,
                        &["Completed", "Completed", "Completed", "NotCompleted"],
                    )
                };
                // New tasks are often due soon: the 45- and 180-day deadlines.
                let due = self.maybe(0.85, |b| {
                    let d = b.rng.random_range(1..60);
                    b.midnight_after(created, d)
                });
                json!({"account_ref": acc, "matter_ref": mat, "subject": pick(self.rng, TASK_SUBJECTS),
                    "notes": if self.rng.random_bool(0.3) { json!("See exchange timeline.") } else { Value::Null },
                    "priority": pick(self.rng, &["Low", "Medium", "Medium", "High"]), "status": status,
                    "due_date": due, "assigned_to_users": self.users(2), "assigned_to_contacts": self.assigned_contacts(0.1),
                    "tags": self.tags(ACTIVITY_TAGS, 0.3)})
            }
            Res::Events => {
                let day = self.rng.random_range(-5..60);
                let all_day = self.rng.random_bool(0.2);
                let start_day = local_date(created + day * DAY);
                let (start, end) = if all_day {
                    let s = local_midnight(start_day);
                    (s, s + DAY)
                } else {
                    let s = local_midnight(start_day) + self.rng.random_range(8..17) * HOUR;
                    (s, s + HOUR * self.rng.random_range(1..3))
                };
                json!({"account_ref": acc, "matter_ref": mat, "subject": pick(self.rng, EVENT_SUBJECTS),
                    "location": pick(self.rng, LOCATIONS), "notes": null, "is_all_day": all_day,
                    "start_date_time": format_ts(start, TsStyle::Naive), "end_date_time": format_ts(end, TsStyle::Naive),
                    "tags": self.tags(ACTIVITY_TAGS, 0.2), "assigned_to_users": self.users(2),
                    "assigned_to_contacts": self.assigned_contacts(0.2)})
            }
            Res::Notes => {
                // Note.date: usually a business date, sometimes the spec's 7-digit +00:00 form.
                let date = if self.rng.random_bool(0.2) {
                    format_ts(created, TsStyle::Offset7)
                } else {
                    self.noon_after(created, 0)
                };
                json!({"account_ref": acc, "matter_ref": mat, "subject": pick(self.rng, NOTE_SUBJECTS),
                    "note": "<p>Discussed identification of replacement property.</p>",
                    "assigned_to_users": self.users(1), "date": date, "tags": self.tags(ACTIVITY_TAGS, 0.2)})
            }
            Res::CallLogs => {
                json!({"account_ref": acc, "matter_ref": mat, "subject": pick(self.rng, CALL_SUBJECTS),
                "duration": (self.rng.random_range(1..60) as f64) / 4.0, "notes": "Left voicemail; will follow up.",
                "date": format_ts(stamp_precision(self.rng, created, 0) - created % TICKS_PER_SEC, TsStyle::Naive),
                "call_direction": pick(self.rng, &["Inbound", "Outbound"]),
                "assigned_to_users": self.users(1), "tags": self.tags(ACTIVITY_TAGS, 0.1)})
            }
            Res::Emails => {
                let client = pick(self.rng, FIRST).to_lowercase();
                let u = self.user();
                let from =
                    json!({"address": u["email_address"], "display_name": u["display_name"]});
                let to =
                    json!([{"address": format!("{client}@gmail.com"), "display_name": client}]);
                let cc = if self.rng.random_bool(0.2) {
                    json!([{"address": "escrow@firsttitle.example", "display_name": "Escrow"}])
                } else {
                    json!([])
                };
                let subject = *pick(self.rng, EMAIL_SUBJECTS);
                let mid = format!("<{}@mail.gmail.com>", new_uuid(self.rng).simple());
                let body =
                    "Hello,\n\nPlease find the next steps for your exchange below.\n\nBest regards";
                json!({"subject": subject, "cc": cc, "to": to, "from": from, "body_text": body,
                    "body_html": format!("<html><body><p>{}</p></body></html>", body.replace("\n\n", "</p><p>")),
                    "external_message_id": mid, "external_thread_id": format!("{:x}", self.rng.random::<u64>()),
                    "account_ref": acc, "matter_ref": mat, "date": format_ts(created - created % TICKS_PER_SEC, TsStyle::Naive),
                    "tags": self.tags(ACTIVITY_TAGS, 0.1), "attachments": [],
                    "assigned_user_ids": [u["id"].clone()]})
            }
            Res::TimeEntries => {
                let (iid, iname, rate) = pick(self.rng, &self.ctx.items).clone();
                json!({"is_billable": self.rng.random_bool(0.85), "is_billed": now - created > 45 * DAY && self.rng.random_bool(0.8),
                    "date": self.noon_after(created, 0), "hours": (self.rng.random_range(1..36) as f64) / 10.0,
                    "rate": rate, "description": pick(self.rng, TASK_SUBJECTS), "private_notes": null,
                    "account_ref": acc, "matter_ref": mat, "billed_by_user_ref": self.user(),
                    "item_ref": {"id": iid, "name": iname},
                    "task_code": if self.rng.random_bool(0.4) { json!(pick(self.rng, TASK_CODES)) } else { Value::Null }})
            }
            Res::Expenses => {
                let qty = self.rng.random_range(1..4) as f64;
                let price = money(self.rng, 5.0, 250.0);
                json!({"is_billable": self.rng.random_bool(0.9), "is_billed": now - created > 45 * DAY && self.rng.random_bool(0.8),
                    "date": self.noon_after(created, 0), "qty": qty, "price": price,
                    "amount": ((qty * price) * 100.0).round() / 100.0, "description": "Disbursement",
                    "private_notes": null, "account_ref": acc, "matter_ref": mat,
                    "billed_by_user_ref": self.user(), "expense_category_ref": pick(self.rng, &self.ctx.categories).clone(),
                    "task_code": if self.rng.random_bool(0.3) { json!("E101") } else { Value::Null }})
            }
            Res::FlatFees => {
                let (iid, iname, rate) = pick(self.rng, &self.ctx.items).clone();
                json!({"is_billable": true, "is_billed": now - created > 45 * DAY && self.rng.random_bool(0.8),
                    "date": self.noon_after(created, 0), "qty": 1, "price": rate,
                    "description": iname, "private_notes": null, "account_ref": acc, "matter_ref": mat,
                    "billed_by_user_ref": self.user(), "item_ref": {"id": iid, "name": iname}})
            }
            Res::Invoices => {
                let mut items = vec![];
                let mut subtotal = 0.0;
                for _ in 0..self.rng.random_range(1..4) {
                    let q = (self.rng.random_range(1..30) as f64) / 10.0;
                    let rate = *pick(self.rng, &[250.0, 300.0, 350.0, 425.0]);
                    let t = (q * rate * 100.0).round() / 100.0;
                    subtotal += t;
                    items.push(json!({"quantity": q, "rate": rate, "discount": 0, "subtotal": t,
                        "tax1_name": null, "tax1_rate": null, "tax1_amount": 0, "tax2_name": null, "tax2_rate": null,
                        "tax2_amount": 0, "total": t, "date": self.noon_after(created, -3),
                        "billed_by": self.user()["display_name"], "item_name": "Exchange services",
                        "item_description": pick(self.rng, TASK_SUBJECTS)}));
                }
                let flat = if self.rng.random_bool(0.5) {
                    let fee = *pick(self.rng, &[750.0, 950.0, 1200.0]);
                    subtotal += fee;
                    json!([{"quantity": 1, "rate": fee, "discount": 0, "subtotal": fee, "tax1_name": null,
                        "tax1_rate": null, "tax1_amount": 0, "tax2_name": null, "tax2_rate": null, "tax2_amount": 0,
                        "total": fee, "date": self.noon_after(created, 0), "billed_by": self.user()["display_name"],
                        "item_name": "Exchange Fee", "item_description": "Standard forward exchange"}])
                } else {
                    json!([])
                };
                let subtotal = (subtotal * 100.0).round() / 100.0;
                let paid = if now - created > 40 * DAY || self.rng.random_bool(0.3) {
                    subtotal
                } else {
                    0.0
                };
                json!({"account_ref": acc, "matter_ref": mat, "issue_date": self.noon_after(created, 0),
                    "due_date": self.midnight_after(created, 30), "items_time_entries": items,
                    "items_expenses": [], "items_flat_fees": flat, "subtotal": subtotal, "tax": 0, "discount": 0,
                    "total": subtotal, "total_paid": paid, "total_outstanding": ((subtotal - paid) * 100.0).round() / 100.0,
                    "invoice_type": pick(self.rng, &["Sale", "Sale", "Sale", "Sale", "Sale", "Sale", "Credit", "Refund"])})
            }
            Res::Payments => {
                let number = self.ctx.next_payment_number;
                self.ctx.next_payment_number += 1;
                let amount = money(self.rng, 300.0, 5000.0);
                let check = self.rng.random_bool(0.3);
                json!({"refundedAmount": 0.0, "account_ref": acc, "matter_ref": mat, "number": number,
                    "date": self.noon_after(created, 0), "total_amount": amount,
                    "unapplied_amount": if self.rng.random_bool(0.1) { amount } else { 0.0 },
                    "notes": null, "payee": null, "to_print": false,
                    "check_number": if check { json!(self.rng.random_range(1000..9999)) } else { Value::Null },
                    "bank_account": pick(self.rng, &self.ctx.banks).clone(),
                    "status": pick(self.rng, &["Success", "Success", "Success", "Success", "Success", "Pending", "Failed", "Refunded"])})
            }
            Res::Files => {
                let (kind, ext, ct) = *pick(self.rng, FILE_KINDS);
                let who = acc["display_name"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let activity = match self.maybe(0.2, |b| b.ctx.tasks.choose(b.rng).cloned()) {
                    Some(Some((id, subject))) => json!({"id": id, "subject": subject}),
                    _ => Value::Null,
                };
                json!({"account_ref": acc, "matter_ref": mat, "activity_ref": activity,
                    "description": if self.rng.random_bool(0.3) { json!("Uploaded by staff") } else { Value::Null },
                    "file_name": format!("{kind} - {who}.{ext}"), "size": self.rng.random_range(20_000..4_000_000),
                    "content_type": ct, "created_by_user_id": self.user()["id"].clone()})
            }
            Res::Relationships => {
                let c = self
                    .ctx
                    .contacts
                    .choose(self.rng)
                    .cloned()
                    .unwrap_or(Value::Null);
                json!({"contact_ref": c, "matter_ref": mat, "name": pick(self.rng, RELATION_NAMES), "notes": null})
            }
            Res::Messages => {
                let c = self
                    .ctx
                    .contacts
                    .choose(self.rng)
                    .cloned()
                    .unwrap_or(Value::Null);
                let u = self.user();
                let by_contact = self.rng.random_bool(0.4);
                json!({"sender": u, "contact_id": c["id"], "contact": c, "type": pick(self.rng, &["Text", "Text", "Secure"]),
                    "matter_id": mat.get("id").cloned().unwrap_or(Value::Null), "account_id": c["account_ref"]["id"],
                    "subject": if self.rng.random_bool(0.5) { json!("Exchange update") } else { Value::Null },
                    "body": pick(self.rng, &["Hi, just checking in on the closing date.", "Documents are ready to sign.", "Funds received, thank you!", "Can you call me back?"]),
                    "sent_date": format_ts(created, TsStyle::Zulu7), "conversation_id": new_uuid(self.rng).to_string(),
                    "external_conversation_id": null, "firm_text_phone_number": "(949) 555-0100",
                    "firm_location_name": "Irvine", "user_name": u["display_name"], "user_email": u["email_address"],
                    "sent_by_contact": by_contact})
            }
            _ => json!({}),
        };
        (v, created)
    }

    /// A patch that edits a record the way staff would.
    pub fn edit_patch(&mut self, res: Res, rec: &Rec, now: i64) -> Value {
        let r = self.rng.random::<f64>();
        match res {
            Res::Accounts => {
                if r < 0.4 {
                    json!({"primary_contact": {"phone_mobile": self.phone()}})
                } else if r < 0.6 {
                    json!({"primary_contact": {"email": format!("{}{}@gmail.com", s(&rec.data, "display_name").to_lowercase().replace([',', ' ', '\''], ""), self.rng.random_range(1..99))}})
                } else if r < 0.85 {
                    json!({"address_street_1": self.address()})
                } else {
                    json!({"tags": self.tags(ACCOUNT_TAGS, 1.0)})
                }
            }
            Res::Contacts => json!({"phone_work": self.phone()}),
            Res::Matters => {
                if r < 0.15 {
                    let st = *pick(self.rng, &["Open", "Pending", "Closed"]);
                    let close = if st == "Closed" {
                        json!(self.noon_after(now, 0))
                    } else {
                        Value::Null
                    };
                    json!({"status": st, "close_date": close})
                } else if r < 0.55 {
                    json!({"custom_field_values": self.cfvs(1, 10, None)})
                } else if r < 0.8 {
                    json!({"notes": format!("<p>Update {}: awaiting documents.</p>", format_ts(now, TsStyle::Naive))})
                } else {
                    json!({"assigned_to_users": self.users(3)})
                }
            }
            Res::Tasks => {
                if r < 0.5 {
                    json!({"status": "Completed"})
                } else if r < 0.8 {
                    let d = self.rng.random_range(1..30);
                    json!({"due_date": self.midnight_after(now, d)})
                } else {
                    json!({"priority": "High", "status": "InProgress"})
                }
            }
            Res::Events => {
                // Moved or rescheduled.
                let start = local_midnight(local_date(now + self.rng.random_range(1..30) * DAY))
                    + self.rng.random_range(8..17) * HOUR;
                json!({"start_date_time": format_ts(start, TsStyle::Naive), "end_date_time": format_ts(start + HOUR, TsStyle::Naive),
                    "location": pick(self.rng, LOCATIONS)})
            }
            Res::Notes => json!({"note": format!("<p>{} (edited)</p>", s(&rec.data, "subject"))}),
            Res::CallLogs => json!({"notes": "Spoke with client; follow-up scheduled."}),
            Res::Emails => json!({"tags": self.tags(ACTIVITY_TAGS, 1.0)}),
            Res::TimeEntries => {
                if r < 0.5 {
                    json!({"is_billed": true})
                } else {
                    json!({"hours": (self.rng.random_range(1..36) as f64) / 10.0})
                }
            }
            Res::Expenses | Res::FlatFees => json!({"is_billed": true}),
            Res::Invoices => {
                let total = rec.data.get("total").and_then(Value::as_f64).unwrap_or(0.0);
                json!({"total_paid": total, "total_outstanding": 0})
            }
            Res::Payments => json!({"status": "Success", "unapplied_amount": 0.0}),
            Res::Files => json!({"description": "Reviewed"}),
            Res::Relationships => json!({"notes": "Confirmed contact details."}),
            Res::Messages => json!({"subject": "Exchange update (read)"}),
            Res::Users => {
                json!({"is_active": !rec.data.get("is_active").and_then(Value::as_bool).unwrap_or(true)})
            }
            _ => json!({}),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The initial firm.

fn history_start(start: i64) -> i64 {
    start - 9 * 365 * DAY
}

fn put(st: &mut Store, res: Res, id: Uuid, data: Value, created: i64, updated: i64) {
    let Value::Object(mut m) = data else { return };
    m.insert("id".into(), json!(id.to_string()));
    st.insert_raw(res, Rec::new(id.to_string(), m, created, updated));
}

/// An `updated_at` for a record created at `created`, no later than `now`.
fn updated_for(rng: &mut impl Rng, created: i64, now: i64) -> i64 {
    if rng.random_bool(0.45) || now - created < HOUR {
        created
    } else {
        let u: f64 = rng.random::<f64>().powf(0.7);
        stamp_precision(
            rng,
            created + ((now - HOUR - created) as f64 * u) as i64,
            created,
        )
    }
}

/// Builds the seed firm into a fresh store.
pub fn generate(seed: u64, scale: f64, start: i64) -> Store {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut st = Store::new();
    let hist = history_start(start);
    let ref_created = |rng: &mut ChaCha8Rng| {
        let t = hist + rng.random_range(0..(start - hist) / 8);
        stamp_precision(rng, t, 0)
    };

    // Users: the first is the admin who authorised the API client (`/users/me`).
    for i in 0..Volumes::of(Res::Users, scale) {
        let id = new_uuid(&mut rng);
        let (first, last) = if i == 0 {
            ("Dana", "Whitfield")
        } else {
            (*pick(&mut rng, FIRST), *pick(&mut rng, LAST))
        };
        let c = ref_created(&mut rng);
        let u = updated_for(&mut rng, c, start);
        put(
            &mut st,
            Res::Users,
            id,
            json!({"is_active": i < 21, "display_name": format!("{first} {last}"),
            "first_name": first, "last_name": last, "middle_name": null,
            "email": format!("{}.{}@peakexchange.example", first.to_lowercase(), last.to_lowercase().replace('\'', ""))}),
            c,
            u,
        );
    }
    let item_names = [
        "Exchange Fee - Forward",
        "Exchange Fee - Reverse",
        "Exchange Fee - Improvement",
        "Exchange Fee - DST",
        "Document Preparation",
        "Attorney Time",
        "Paralegal Time",
        "Consultation",
        "Wire Processing",
        "Rush Fee",
    ];
    for i in 0..Volumes::of(Res::Items, scale) {
        let id = new_uuid(&mut rng);
        let name = if i < item_names.len() {
            item_names[i].to_owned()
        } else {
            format!(
                "{} - Tier {}",
                item_names[i % item_names.len()],
                i / item_names.len() + 1
            )
        };
        let rate = *pick(
            &mut rng,
            &[150.0, 250.0, 300.0, 350.0, 425.0, 750.0, 950.0, 1200.0],
        );
        let c = ref_created(&mut rng);
        let u = updated_for(&mut rng, c, start);
        put(
            &mut st,
            Res::Items,
            id,
            json!({"name": name, "code": format!("I{:03}", i + 1),
            "description": null, "rate": rate}),
            c,
            u,
        );
    }
    for name in EXPENSE_CATEGORIES {
        let id = new_uuid(&mut rng);
        let c = ref_created(&mut rng);
        let u = updated_for(&mut rng, c, start);
        put(
            &mut st,
            Res::ExpenseCategories,
            id,
            json!({"name": name}),
            c,
            u,
        );
    }
    for (ty, name) in BANK_ACCOUNTS {
        let id = new_uuid(&mut rng);
        let c = ref_created(&mut rng);
        put(
            &mut st,
            Res::BankAccounts,
            id,
            json!({"type": ty, "name": name}),
            c,
            c,
        );
    }
    for (res, defs) in [
        (Res::CfCompany, CF_COMPANY),
        (Res::CfMatter, CF_MATTER),
        (Res::CfContact, CF_CONTACT),
    ] {
        for (label, vt, dd) in defs {
            let id = new_uuid(&mut rng);
            let c = ref_created(&mut rng);
            put(
                &mut st,
                res,
                id,
                json!({"label": label, "value_type": vt,
                "dropdown_list_values": if dd.is_empty() { Value::Null } else { json!(dd) },
                "help_text": null, "tooltip": null}),
                c,
                c,
            );
        }
    }
    for (res, vocab) in [
        (Res::TagsAccount, ACCOUNT_TAGS),
        (Res::TagsMatter, MATTER_TAGS),
        (Res::TagsActivity, ACTIVITY_TAGS),
    ] {
        for name in vocab {
            let c = ref_created(&mut rng);
            st.insert_raw(
                res,
                Rec::new(
                    (*name).to_owned(),
                    json!({"name": name})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    c,
                    c,
                ),
            );
        }
    }

    // Accounts, each with a primary contact.
    let mut ctx = Ctx::from_store(&st);
    let n_acc = Volumes::of(Res::Accounts, scale);
    let mut idgen = {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_d1d5);
        move || new_uuid(&mut r)
    };
    for _ in 0..n_acc {
        let v = Builder {
            rng: &mut rng,
            ctx: &mut ctx,
        }
        .account();
        let c = {
            let t = hist + ((start - HOUR - hist) as f64 * rng.random::<f64>().powf(0.6)) as i64;
            stamp_precision(&mut rng, t, 0)
        };
        let u = updated_for(&mut rng, c, start);
        let mut v = v;
        v["created_at"] = json!(format_ts(c, TsStyle::Naive));
        v["updated_at"] = json!(format_ts(u, TsStyle::Naive));
        st.create(Res::Accounts, v, start, &mut idgen)
            .expect("generated account is valid");
    }
    // Contacts carry their account's stamps (hidden): an account's updated_at moves with them.
    ctx = Ctx::from_store(&st);

    // Matters.
    for _ in 0..Volumes::of(Res::Matters, scale) {
        let a = rng.random_range(0..ctx.accounts.len());
        let acc_created = ctx.accounts[a].created;
        let c = {
            let mut b = Builder {
                rng: &mut rng,
                ctx: &mut ctx,
            };
            let t = b.created_between(acc_created, start);
            stamp_precision(b.rng, t, 0)
        };
        let v = Builder {
            rng: &mut rng,
            ctx: &mut ctx,
        }
        .matter(a, c, start);
        let u = updated_for(&mut rng, c, start);
        put(&mut st, Res::Matters, new_uuid(&mut rng), v, c, u);
    }
    ctx = Ctx::from_store(&st);

    // Activities and billing.
    for res in [
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
        Res::Relationships,
        Res::Files,
        Res::Messages,
    ] {
        if res == Res::Files {
            ctx = Ctx::from_store(&st); // files point at tasks
        }
        for _ in 0..Volumes::of(res, scale) {
            let (v, c) = Builder {
                rng: &mut rng,
                ctx: &mut ctx,
            }
            .activity(res, start, None);
            let c = stamp_precision(&mut rng, c, 0);
            let u = updated_for(&mut rng, c, start);
            let id = new_uuid(&mut rng);
            let Value::Object(mut m) = v else { continue };
            m.insert("id".into(), json!(id.to_string()));
            let mut rec = Rec::new(id.to_string(), m, c, u);
            for hidden in ["assigned_user_ids", "created_by_user_id"] {
                if let Some(h) = rec.data.remove(hidden) {
                    rec.hidden.insert(hidden.into(), h);
                }
            }
            st.insert_raw(res, rec);
        }
    }
    st.render_all();
    st
}

/// Days from an exchange's opening to its relinquished property's closing (1 to 28): a function
/// of the opening instant, so a matter's closing and its two deadlines agree without another draw.
fn closing_offset(opened: i64) -> i64 {
    (opened / DAY).rem_euclid(28) + 1
}
