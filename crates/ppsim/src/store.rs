//! The firm's records, one table per resource, each record with its list rendering cached.
//!
//! Why cache: a full listing of the seed firm's 11,171 accounts (with embedded contacts and custom
//! fields) is ~10 MB of JSON. Rendering happens once per change; a listing only concatenates bytes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::model::{Def, Filt, Res, Stamps, table_key};
use crate::time::{TsStyle, format_ts, parse_ts};

/// Records named by resource and id.
pub type Ids = Vec<(Res, String)>;

/// One record.
#[derive(Clone, Debug)]
pub struct Rec {
    /// Lowercase hyphenated uuid; a tag's name for tags.
    pub id: String,
    /// Rendered fields except `created_at`/`updated_at` and an account's embedded contacts.
    pub data: Map<String, Value>,
    /// State the API does not render but filters on (an email's assigned users, an account's
    /// contact ids, ...).
    pub hidden: Map<String, Value>,
    /// 100-ns ticks since the Unix epoch; kept even for resources that don't render them.
    pub created: i64,
    pub updated: i64,
    /// The record exactly as a list renders it.
    pub bytes: Bytes,
}

impl Rec {
    pub fn new(id: String, data: Map<String, Value>, created: i64, updated: i64) -> Rec {
        Rec {
            id,
            data,
            hidden: Map::new(),
            created,
            updated,
            bytes: Bytes::new(),
        }
    }

    /// `data[field].id` as a string.
    pub fn ref_id(&self, field: &str) -> Option<&str> {
        self.data.get(field)?.get("id")?.as_str()
    }
}

/// A parsed filter argument.
#[derive(Clone, Debug)]
pub enum Arg {
    Ts(i64),
    /// A lowercase uuid.
    Id(String),
    Text(String),
}

/// One `$orderby` term.
#[derive(Clone, Debug)]
pub struct OrderTerm {
    pub field: String,
    pub desc: bool,
}

/// One record of a table's `updated_at` order: where it sorts, its key, and what a page of a
/// plain `updated_since` listing renders of it (so such a page is a slice of this, with no lookups
/// in the table: those were two thirds of the simulator's time serving a backfill).
struct Entry {
    updated: i64,
    key: Vec<u8>,
    id: String,
    bytes: Bytes,
}

/// Every record of a table in (`updated_at`, key) order.
type ByUpdated = Vec<Entry>;

/// A record as a listing sends it.
#[derive(Clone, Debug)]
pub struct Listed<'a> {
    pub id: &'a str,
    pub bytes: Bytes,
}

impl<'a> From<&'a Rec> for Listed<'a> {
    fn from(r: &'a Rec) -> Listed<'a> {
        Listed {
            id: &r.id,
            bytes: r.bytes.clone(),
        }
    }
}

#[derive(Default)]
pub struct Store {
    tables: Vec<BTreeMap<Vec<u8>, Rec>>,
    /// Per table, its keys in `updated_at` order (ties in key order), built on the first listing
    /// that needs it and dropped by any change to the table: a page of `updated_since` +
    /// `$orderby=updated_at` is then a binary search and a walk, where a scan of the whole table
    /// per page made a paged listing of a big collection quadratic (20 ms a page at 250k records).
    by_updated: Vec<OnceLock<ByUpdated>>,
    /// Bumped by every change to any table (what the change generator's memo is checked against).
    version: u64,
    /// Per table: its list rendering carries the fields the spec says only GET-by-id returns
    /// (the other answer to an unknown: the live list may hold them after all).
    full_lists: Vec<bool>,
}

impl Store {
    pub fn new() -> Store {
        Store {
            tables: Res::ALL.iter().map(|_| BTreeMap::new()).collect(),
            by_updated: Res::ALL.iter().map(|_| OnceLock::new()).collect(),
            version: 0,
            full_lists: Res::ALL.iter().map(|_| false).collect(),
        }
    }

    /// Makes `res`'s list rendering carry (or leave out) the single-GET-only fields, re-rendering
    /// its records (their `updated_at` unchanged, as a server that changed its serializer).
    pub fn set_full_list(&mut self, res: Res, full: bool) {
        if self.full_lists[res.idx()] == full {
            return;
        }
        self.full_lists[res.idx()] = full;
        let keys: Vec<Vec<u8>> = self.tables[res.idx()].keys().cloned().collect();
        for k in keys {
            self.refresh_key(res, &k);
        }
    }

    /// Every record of `res` as GET-by-id renders it.
    pub fn render_by_id(&self, res: Res) -> Vec<Vec<u8>> {
        self.tables[res.idx()]
            .values()
            .map(|rec| self.render(res, rec, true))
            .collect()
    }

    /// Changes with every change to the records (not with re-rendering them).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The table, to change: its `updated_at` order is rebuilt at the next listing that needs it.
    fn table_mut(&mut self, res: Res) -> &mut BTreeMap<Vec<u8>, Rec> {
        self.by_updated[res.idx()] = OnceLock::new();
        self.version += 1;
        &mut self.tables[res.idx()]
    }

    fn by_updated(&self, res: Res) -> &[Entry] {
        self.by_updated[res.idx()].get_or_init(|| {
            let mut v: Vec<Entry> = self.tables[res.idx()]
                .iter()
                .map(|(k, r)| Entry {
                    updated: r.updated,
                    key: k.clone(),
                    id: r.id.clone(),
                    bytes: r.bytes.clone(),
                })
                .collect();
            v.sort_unstable_by(|a, b| (a.updated, &a.key).cmp(&(b.updated, &b.key)));
            v
        })
    }

    pub fn table(&self, res: Res) -> &BTreeMap<Vec<u8>, Rec> {
        &self.tables[res.idx()]
    }

    pub fn len(&self, res: Res) -> usize {
        self.tables[res.idx()].len()
    }

    pub fn get(&self, res: Res, id: &str) -> Option<&Rec> {
        let key = table_key(res, &norm_id(res, id))?;
        self.tables[res.idx()].get(&key)
    }

    fn get_mut(&mut self, res: Res, id: &str) -> Option<&mut Rec> {
        let key = table_key(res, &norm_id(res, id))?;
        self.table_mut(res).get_mut(&key)
    }

    /// Inserts without rendering (the dataset generator renders everything at the end).
    pub fn insert_raw(&mut self, res: Res, rec: Rec) {
        let key = table_key(res, &rec.id).expect("generated ids are valid");
        self.table_mut(res).insert(key, rec);
    }

    /// Renders every record (contacts before accounts, which embed them).
    pub fn render_all(&mut self) {
        for res in Res::ALL {
            let keys: Vec<Vec<u8>> = self.tables[res.idx()].keys().cloned().collect();
            for k in keys {
                self.refresh_key(res, &k);
            }
        }
        // Accounts come first in Res::ALL; render them again now that contacts are rendered.
        let keys: Vec<Vec<u8>> = self.tables[Res::Accounts.idx()].keys().cloned().collect();
        for k in keys {
            self.refresh_key(Res::Accounts, &k);
        }
    }

    fn refresh_key(&mut self, res: Res, key: &[u8]) {
        let Some(rec) = self.tables[res.idx()].get(key) else {
            return;
        };
        let bytes = Bytes::from(self.render(res, rec, self.full_lists[res.idx()]));
        // Only the rendering changes (not the version), but the `updated_at` order holds it too.
        if let Some(rec) = self.tables[res.idx()].get_mut(key) {
            rec.bytes = bytes;
            self.by_updated[res.idx()] = OnceLock::new();
        }
    }

    /// Re-renders one record; for a contact, its account too (which embeds it).
    pub fn refresh(&mut self, res: Res, id: &str) {
        if let Some(key) = table_key(res, id) {
            self.refresh_key(res, &key);
        }
        if res == Res::Contacts
            && let Some(acc) = self
                .get(res, id)
                .and_then(|c| c.ref_id("account_ref"))
                .map(str::to_owned)
        {
            self.refresh(Res::Accounts, &acc);
        }
    }

    /// The record's JSON. `single` adds the fields only GET-by-id returns.
    pub fn render(&self, res: Res, rec: &Rec, single: bool) -> Vec<u8> {
        let spec = res.spec();
        let mut out = Vec::with_capacity(rec.bytes.len().max(256) + 64);
        out.push(b'{');
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, name: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Field names are plain ASCII identifiers; extra names go through serde.
            serde_json::to_writer(&mut *out, name).expect("write to vec");
            out.push(b':');
        };
        // Fields a test set to raw JSON text (`set_raw_field`): sent exactly so, whatever it is.
        let raw = |name: &str| -> Option<&str> { rec.hidden.get(RAW_FIELDS)?.get(name)?.as_str() };
        for (name, def) in spec.fields {
            if !single && spec.single_only.contains(name) {
                continue;
            }
            if let Some(text) = raw(name) {
                key(&mut out, name);
                out.extend_from_slice(text.as_bytes());
                continue;
            }
            match def {
                Def::Created | Def::Updated => {
                    let t = if *def == Def::Created {
                        rec.created
                    } else {
                        rec.updated
                    };
                    let style = match spec.stamps {
                        Stamps::Zulu7 => TsStyle::Zulu7,
                        _ => TsStyle::Naive,
                    };
                    key(&mut out, name);
                    out.push(b'"');
                    out.extend_from_slice(format_ts(t, style).as_bytes());
                    out.push(b'"');
                }
                Def::PrimaryContact => {
                    key(&mut out, name);
                    match rec
                        .hidden
                        .get("primary_contact_id")
                        .and_then(Value::as_str)
                        .and_then(|c| self.get(Res::Contacts, c))
                    {
                        Some(c) => out.extend_from_slice(&c.bytes),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                Def::OtherContacts => {
                    key(&mut out, name);
                    out.push(b'[');
                    let mut n = 0;
                    for cid in other_contact_ids(rec) {
                        if let Some(c) = self.get(Res::Contacts, &cid) {
                            if n > 0 {
                                out.push(b',');
                            }
                            out.extend_from_slice(&c.bytes);
                            n += 1;
                        }
                    }
                    out.push(b']');
                }
                _ => {
                    key(&mut out, name);
                    match rec.data.get(*name) {
                        Some(v) => serde_json::to_writer(&mut out, v).expect("write to vec"),
                        None => out.extend_from_slice(default_json(*def)),
                    }
                }
            }
        }
        // Fields a test added that the spec doesn't name: kept, after the known ones.
        for (name, v) in &rec.data {
            if spec.fields.iter().any(|(f, _)| f == name) {
                continue;
            }
            key(&mut out, name);
            match raw(name) {
                Some(text) => out.extend_from_slice(text.as_bytes()),
                None => serde_json::to_writer(&mut out, v).expect("write to vec"),
            }
        }
        if let Some(Value::Object(fields)) = rec.hidden.get(RAW_FIELDS) {
            for (name, text) in fields {
                if spec.fields.iter().any(|(f, _)| f == name) || rec.data.contains_key(name) {
                    continue;
                }
                key(&mut out, name);
                out.extend_from_slice(text.as_str().unwrap_or("null").as_bytes());
            }
        }
        out.push(b'}');
        out
    }

    /// Sets one field of a record to raw JSON text, sent exactly as given (a number out of
    /// range, a lone surrogate escape, nesting deeper than parsers go: what a real server might
    /// send and `serde_json::Value` cannot hold), and stamps the record `now`.
    pub fn set_raw_field(
        &mut self,
        res: Res,
        id: &str,
        field: &str,
        text: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        let id = norm_id(res, id);
        let rec = self
            .get_mut(res, &id)
            .ok_or_else(|| anyhow!("no {} record {id}", res.name()))?;
        let fields = rec
            .hidden
            .entry(RAW_FIELDS)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = fields {
            m.insert(field.to_owned(), Value::String(text.to_owned()));
        }
        rec.updated = now;
        if let Some(key) = table_key(res, &id) {
            self.refresh_key(res, &key);
        }
        if res == Res::Contacts {
            self.refresh(Res::Contacts, &id);
        }
        Ok(())
    }

    /// Does `rec` pass the filter?
    pub fn matches(&self, res: Res, rec: &Rec, f: &Filt, arg: &Arg) -> bool {
        let text = |a: &Arg| match a {
            Arg::Text(s) | Arg::Id(s) => s.clone(),
            Arg::Ts(_) => String::new(),
        };
        match (f, arg) {
            (Filt::CreatedSince, Arg::Ts(t)) => rec.created >= *t,
            (Filt::UpdatedSince, Arg::Ts(t)) => rec.updated >= *t,
            (Filt::Ref(field), Arg::Id(id)) => rec.ref_id(field) == Some(id.as_str()),
            (Filt::Ref2(outer, inner), Arg::Id(id)) => {
                rec.data
                    .get(*outer)
                    .and_then(|o| o.get(*inner))
                    .and_then(|o| o.get("id"))
                    .and_then(Value::as_str)
                    == Some(id.as_str())
            }
            (Filt::AnyRef(field), Arg::Id(id)) => any_ref(rec.data.get(*field), id),
            (Filt::HiddenId(key), Arg::Id(id)) => match rec.hidden.get(*key) {
                Some(Value::String(s)) => s == id,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(id.as_str())),
                _ => false,
            },
            (Filt::AccountAssigned, Arg::Id(id)) => self
                .account_of(res, rec)
                .is_some_and(|a| any_ref(a.data.get("assigned_to_users"), id)),
            (Filt::Enum(field, _), a) => rec
                .data
                .get(*field)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(&text(a))),
            (Filt::Enum2(outer, inner, _), a) => rec
                .data
                .get(*outer)
                .and_then(|o| o.get(*inner))
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(&text(a))),
            (Filt::DateFrom(field), Arg::Ts(t)) => business_ts(rec, field).is_some_and(|v| v >= *t),
            (Filt::DateTo(field), Arg::Ts(t)) => business_ts(rec, field).is_some_and(|v| v <= *t),
            (Filt::Search(fields), a) => {
                let needle = text(a).to_lowercase();
                fields.iter().any(|f| {
                    rec.data
                        .get(*f)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.to_lowercase().contains(&needle))
                })
            }
            (Filt::Tag, a) => has_tag(rec, &text(a)),
            (Filt::AccountTag, a) => self
                .account_of(res, rec)
                .is_some_and(|acc| has_tag(acc, &text(a))),
            (Filt::TextEq(field), a) => rec
                .data
                .get(*field)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(&text(a))),
            (Filt::AccountCompany, a) => self.account_of(res, rec).is_some_and(|acc| {
                acc.data
                    .get("company_name")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(&text(a)))
            }),
            (Filt::Ignored(_), _) => true,
            _ => true,
        }
    }

    /// The account a record belongs to (itself for an account).
    fn account_of<'a>(&'a self, res: Res, rec: &'a Rec) -> Option<&'a Rec> {
        if res == Res::Accounts {
            return Some(rec);
        }
        self.get(Res::Accounts, rec.ref_id("account_ref")?)
    }

    /// Filtered, ordered records (before `$skip`/`$top`).
    #[cfg(test)]
    pub fn select(&self, res: Res, conds: &[(Filt, Arg)], order: &[OrderTerm]) -> Vec<&Rec> {
        let mut out: Vec<&Rec> = self.tables[res.idx()]
            .values()
            .filter(|r| conds.iter().all(|(f, a)| self.matches(res, r, f, a)))
            .collect();
        if !order.is_empty() {
            // Stable sort: ties keep the default (id) order, so paging is deterministic.
            out.sort_by(|a, b| {
                for t in order {
                    let o = cmp_field(res, a, b, &t.field);
                    let o = if t.desc { o.reverse() } else { o };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        out
    }

    /// `select`'s result from position `skip`, at most `take` records, without sorting all of it:
    /// the first `skip + take` are found by selection, then sorted (a page of a big collection
    /// costs a scan, not a sort of the collection). Equal to `select(..)[skip..][..take]`.
    pub fn select_page(
        &self,
        res: Res,
        conds: &[(Filt, Arg)],
        order: &[OrderTerm],
        skip: usize,
        take: usize,
    ) -> Vec<Listed<'_>> {
        let table = &self.tables[res.idx()];
        let keep = |r: &&Rec| conds.iter().all(|(f, a)| self.matches(res, r, f, a));
        let asc = |field: &str| OrderTerm {
            field: field.into(),
            desc: false,
        };
        let is = |terms: &[OrderTerm]| {
            order.len() == terms.len()
                && order
                    .iter()
                    .zip(terms)
                    .all(|(a, b)| a.field == b.field && a.desc == b.desc)
        };
        // The orders a sync client pages by, walked in order and stopped at the page's end.
        // Ties are broken by position (the key), as the general path below does.
        if is(&[]) || is(&[asc("id")]) {
            return table
                .values()
                .filter(keep)
                .skip(skip)
                .take(take)
                .map(Listed::from)
                .collect();
        }
        if is(&[asc("updated_at")]) || is(&[asc("updated_at"), asc("id")]) {
            let index = self.by_updated(res);
            // Records before the latest `updated_since` bound cannot match.
            let from = conds
                .iter()
                .filter_map(|c| match c {
                    (Filt::UpdatedSince, Arg::Ts(t)) => Some(*t),
                    _ => None,
                })
                .max()
                .map_or(0, |t| index.partition_point(|e| e.updated < t));
            let rest = &index[from..];
            if conds
                .iter()
                .all(|c| matches!(c, (Filt::UpdatedSince, Arg::Ts(_))))
            {
                // Every record from `from` on matches: the page is a slice of the order.
                return rest
                    .iter()
                    .skip(skip)
                    .take(take)
                    .map(|e| Listed {
                        id: &e.id,
                        bytes: e.bytes.clone(),
                    })
                    .collect();
            }
            return rest
                .iter()
                .filter_map(|e| table.get(&e.key))
                .filter(keep)
                .skip(skip)
                .take(take)
                .map(Listed::from)
                .collect();
        }
        let mut out: Vec<(usize, &Rec)> = table.values().filter(keep).enumerate().collect();
        // The stable sort's tie-break made explicit: the default (id) order, i.e. the position.
        let cmp = |a: &(usize, &Rec), b: &(usize, &Rec)| {
            for t in order {
                // The table is keyed by `table_key(id)`, so a record's position is its id order:
                // comparing positions spares parsing two GUIDs per comparison.
                let o = if t.field == "id" {
                    a.0.cmp(&b.0)
                } else {
                    cmp_field(res, a.1, b.1, &t.field)
                };
                let o = if t.desc { o.reverse() } else { o };
                if o.is_ne() {
                    return o;
                }
            }
            a.0.cmp(&b.0)
        };
        let end = skip.saturating_add(take);
        if !order.is_empty() {
            if end < out.len() {
                out.select_nth_unstable_by(end, cmp);
                out.truncate(end);
            }
            out.sort_unstable_by(cmp);
        }
        out.into_iter()
            .skip(skip)
            .take(take)
            .map(|(_, r)| Listed::from(r))
            .collect()
    }

    /// Creates a record from loose JSON, filling what is missing. Returns the created ids
    /// (the record, plus any contacts created with an account).
    pub fn create(
        &mut self,
        res: Res,
        value: Value,
        now: i64,
        new_id: &mut dyn FnMut() -> Uuid,
    ) -> anyhow::Result<Vec<(Res, String)>> {
        let Value::Object(mut data) = value else {
            bail!("a record must be a JSON object");
        };
        let created = take_ts(&mut data, "created_at")?.unwrap_or(now);
        let updated = take_ts(&mut data, "updated_at")?.unwrap_or(created);
        let id = if res.is_tag() {
            data.get("name")
                .and_then(Value::as_str)
                .context("a tag needs a name")?
                .to_owned()
        } else {
            match data.get("id").and_then(Value::as_str) {
                Some(s) => Uuid::parse_str(s)
                    .with_context(|| format!("id {s:?} is not a uuid"))?
                    .to_string(),
                None => new_id().to_string(),
            }
        };
        if self.get(res, &id).is_some() {
            bail!("{} {id} already exists", res.name());
        }
        if !res.is_tag() {
            data.insert("id".into(), Value::String(id.clone()));
        }
        let mut made = vec![(res, id.clone())];
        match res {
            Res::Accounts => {
                let primary = data.remove("primary_contact");
                let others = data.remove("other_contacts");
                let mut rec = Rec::new(id.clone(), data, created, updated);
                rec.hidden.insert("primary_contact_id".into(), Value::Null);
                rec.hidden.insert("other_contact_ids".into(), json!([]));
                fill_account_name(&mut rec, primary.as_ref());
                self.insert_raw(res, rec);
                if let Some(p @ Value::Object(_)) = primary {
                    made.extend(self.create_contact(&id, p, true, created, updated, new_id)?);
                }
                if let Some(Value::Array(list)) = others {
                    for c in list {
                        made.extend(self.create_contact(&id, c, false, created, updated, new_id)?);
                    }
                }
                self.refresh(res, &id);
            }
            Res::Contacts => {
                let acc = data
                    .get("account_ref")
                    .and_then(|a| a.get("id"))
                    .or_else(|| data.get("account_id"))
                    .and_then(Value::as_str)
                    .context("a contact needs account_ref.id naming an existing account")?
                    .to_owned();
                data.remove("account_id");
                let primary = self
                    .get(Res::Accounts, &acc)
                    .with_context(|| format!("no account {acc}"))?
                    .hidden
                    .get("primary_contact_id")
                    .is_none_or(Value::is_null);
                let ids = self.create_contact(
                    &acc,
                    Value::Object(data),
                    primary,
                    created,
                    updated,
                    new_id,
                )?;
                // The contact's account changed too (it embeds the contact).
                if let Some(a) = self.get_mut(Res::Accounts, &acc) {
                    a.updated = a.updated.max(updated);
                }
                self.refresh(Res::Accounts, &acc);
                return Ok(ids);
            }
            _ => {
                let mut rec = Rec::new(id.clone(), data, created, updated);
                if res == Res::Matters {
                    fill_matter_name(&mut rec);
                }
                if res == Res::Emails
                    && let Some(users) = rec.data.remove("assigned_user_ids")
                {
                    rec.hidden.insert("assigned_user_ids".into(), users);
                }
                if res == Res::Files
                    && let Some(u) = rec.data.remove("created_by_user_id")
                {
                    rec.hidden.insert("created_by_user_id".into(), u);
                }
                self.insert_raw(res, rec);
                self.refresh(res, &id);
            }
        }
        Ok(made)
    }

    fn create_contact(
        &mut self,
        account_id: &str,
        value: Value,
        primary: bool,
        created: i64,
        updated: i64,
        new_id: &mut dyn FnMut() -> Uuid,
    ) -> anyhow::Result<Vec<(Res, String)>> {
        let Value::Object(mut data) = value else {
            bail!("a contact must be a JSON object");
        };
        let id = match data.get("id").and_then(Value::as_str) {
            Some(s) => Uuid::parse_str(s)
                .with_context(|| format!("id {s:?} is not a uuid"))?
                .to_string(),
            None => new_id().to_string(),
        };
        if self.get(Res::Contacts, &id).is_some() {
            bail!("contact {id} already exists");
        }
        let acc = self
            .get(Res::Accounts, account_id)
            .with_context(|| format!("no account {account_id}"))?;
        let acc_name = acc.data.get("display_name").cloned().unwrap_or(Value::Null);
        data.insert("id".into(), Value::String(id.clone()));
        data.insert(
            "account_ref".into(),
            json!({"id": account_id, "display_name": acc_name}),
        );
        data.insert("is_primary_contact".into(), Value::Bool(primary));
        data.entry("status").or_insert_with(|| json!("Active"));
        let mut rec = Rec::new(id.clone(), data, created, updated);
        fill_contact_name(&mut rec);
        self.insert_raw(Res::Contacts, rec);
        let acc = self
            .get_mut(Res::Accounts, account_id)
            .expect("checked above");
        if primary {
            acc.hidden
                .insert("primary_contact_id".into(), Value::String(id.clone()));
        } else {
            let list = acc
                .hidden
                .entry("other_contact_ids")
                .or_insert_with(|| json!([]));
            if let Value::Array(a) = list {
                a.push(Value::String(id.clone()));
            }
        }
        self.refresh(Res::Contacts, &id);
        Ok(vec![(Res::Contacts, id)])
    }

    /// Merges `patch` into a record and stamps `updated_at = now`. Returns every record whose
    /// `updated_at` moved (an account and its contact move together).
    pub fn edit(
        &mut self,
        res: Res,
        id: &str,
        patch: Value,
        now: i64,
    ) -> anyhow::Result<Vec<(Res, String)>> {
        let Value::Object(mut patch) = patch else {
            bail!("a patch must be a JSON object");
        };
        let id = norm_id(res, id);
        if self.get(res, &id).is_none() {
            bail!("no {} record {id}", res.name());
        }
        patch.remove("id");
        patch.remove("created_at");
        patch.remove("updated_at");
        let mut touched = vec![(res, id.clone())];
        match res {
            Res::Accounts => {
                let primary = patch.remove("primary_contact");
                let others = patch.remove("other_contacts");
                let rec = self.get_mut(res, &id).expect("checked");
                merge(&mut rec.data, patch);
                rec.updated = now;
                if let Some(Value::Object(p)) = primary {
                    let pid = rec
                        .hidden
                        .get("primary_contact_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    match pid {
                        Some(pid) => {
                            let c = self.get_mut(Res::Contacts, &pid).expect("linked contact");
                            merge_contact(c, p);
                            c.updated = now;
                            touched.push((Res::Contacts, pid));
                        }
                        None => {
                            bail!("account {id} has no primary contact to edit");
                        }
                    }
                }
                if let Some(Value::Array(list)) = others {
                    for p in list {
                        let Value::Object(p) = p else { continue };
                        let cid = p.get("id").and_then(Value::as_str).map(str::to_owned);
                        if let Some(cid) = cid
                            && let Some(c) = self.get_mut(Res::Contacts, &cid)
                        {
                            merge_contact(c, p);
                            c.updated = now;
                            touched.push((Res::Contacts, c.id.clone()));
                        }
                    }
                }
                for (r, i) in touched.clone() {
                    if r == Res::Contacts {
                        self.refresh(r, &i);
                    }
                }
                self.refresh(res, &id);
            }
            Res::Contacts => {
                let c = self.get_mut(res, &id).expect("checked");
                patch.remove("account_ref");
                patch.remove("is_primary_contact");
                merge_contact(c, patch);
                c.updated = now;
                if let Some(acc) = c.ref_id("account_ref").map(str::to_owned) {
                    if let Some(a) = self.get_mut(Res::Accounts, &acc) {
                        a.updated = now;
                    }
                    touched.push((Res::Accounts, acc));
                }
                self.refresh(res, &id);
            }
            _ => {
                let rec = self.get_mut(res, &id).expect("checked");
                let renamed = patch.contains_key("name") && !patch.contains_key("display_name");
                merge(&mut rec.data, patch);
                if res == Res::Matters && renamed {
                    rec.data.remove("display_name");
                    fill_matter_name(rec);
                }
                if !res.is_tag() {
                    rec.updated = now;
                }
                self.refresh(res, &id);
            }
        }
        Ok(touched)
    }

    /// Deletes a record. Deleting an account deletes its contacts; deleting a contact detaches
    /// it from its account, which counts as an edit of the account. Returns (deleted, edited).
    pub fn delete(&mut self, res: Res, id: &str, now: i64) -> anyhow::Result<(Ids, Ids)> {
        let id = norm_id(res, id);
        let key = table_key(res, &id).ok_or_else(|| anyhow!("bad id {id:?}"))?;
        let rec = self
            .table_mut(res)
            .remove(&key)
            .ok_or_else(|| anyhow!("no {} record {id}", res.name()))?;
        let mut deleted = vec![(res, id.clone())];
        let mut edited = vec![];
        match res {
            Res::Accounts => {
                let mut cids = other_contact_ids(&rec);
                if let Some(p) = rec.hidden.get("primary_contact_id").and_then(Value::as_str) {
                    cids.push(p.to_owned());
                }
                for c in cids {
                    if let Some(k) = table_key(Res::Contacts, &c)
                        && self.table_mut(Res::Contacts).remove(&k).is_some()
                    {
                        deleted.push((Res::Contacts, c));
                    }
                }
            }
            Res::Contacts => {
                if let Some(acc_id) = rec.ref_id("account_ref")
                    && let Some(acc) = self.get_mut(Res::Accounts, acc_id)
                {
                    if acc.hidden.get("primary_contact_id").and_then(Value::as_str) == Some(&id) {
                        acc.hidden.insert("primary_contact_id".into(), Value::Null);
                    }
                    if let Some(Value::Array(a)) = acc.hidden.get_mut("other_contact_ids") {
                        a.retain(|v| v.as_str() != Some(id.as_str()));
                    }
                    acc.updated = now;
                    let acc_id = acc_id.to_owned();
                    self.refresh(Res::Accounts, &acc_id);
                    edited.push((Res::Accounts, acc_id));
                }
            }
            _ => {}
        }
        Ok((deleted, edited))
    }

    /// Sets a record's `updated_at` (tie tests). For a contact, the account is left alone.
    pub fn set_updated(&mut self, res: Res, id: &str, at: i64) -> anyhow::Result<()> {
        let id = norm_id(res, id);
        let rec = self
            .get_mut(res, &id)
            .ok_or_else(|| anyhow!("no {} record {id}", res.name()))?;
        rec.updated = at;
        if res.is_tag() {
            rec.created = at;
        }
        if let Some(key) = table_key(res, &id) {
            self.refresh_key(res, &key);
        }
        if res == Res::Contacts {
            self.refresh(Res::Contacts, &id);
        }
        Ok(())
    }
}

/// The hidden key holding a record's raw field overrides (`Store::set_raw_field`).
const RAW_FIELDS: &str = "raw_fields";

/// Uuids are matched lowercase; tag names as given.
pub fn norm_id(res: Res, id: &str) -> String {
    if res.is_tag() {
        id.to_owned()
    } else {
        id.to_ascii_lowercase()
    }
}

pub fn other_contact_ids(rec: &Rec) -> Vec<String> {
    match rec.hidden.get("other_contact_ids") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    }
}

fn default_json(def: Def) -> &'static [u8] {
    match def {
        Def::Arr => b"[]",
        Def::False => b"false",
        Def::Zero => b"0",
        _ => b"null",
    }
}

fn any_ref(v: Option<&Value>, id: &str) -> bool {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .any(|u| u.get("id").and_then(Value::as_str) == Some(id)),
        _ => false,
    }
}

fn has_tag(rec: &Rec, tag: &str) -> bool {
    match rec.data.get("tags") {
        Some(Value::Array(a)) => a
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.eq_ignore_ascii_case(tag))),
        _ => false,
    }
}

fn business_ts(rec: &Rec, field: &str) -> Option<i64> {
    parse_ts(rec.data.get(field)?.as_str()?)
}

fn take_ts(data: &mut Map<String, Value>, field: &str) -> anyhow::Result<Option<i64>> {
    match data.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_ts(&s)
            .map(Some)
            .ok_or_else(|| anyhow!("{field} {s:?} is not a timestamp")),
        Some(v) => bail!("{field} must be a string, not {v}"),
    }
}

fn merge(data: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        data.insert(k, v);
    }
}

fn merge_contact(c: &mut Rec, mut patch: Map<String, Value>) {
    patch.remove("id");
    patch.remove("account_ref");
    patch.remove("is_primary_contact");
    let renamed = (patch.contains_key("first_name") || patch.contains_key("last_name"))
        && !patch.contains_key("display_name");
    merge(&mut c.data, patch);
    if renamed {
        c.data.remove("display_name");
        fill_contact_name(c);
    }
}

fn str_field<'a>(data: &'a Map<String, Value>, f: &str) -> &'a str {
    data.get(f).and_then(Value::as_str).unwrap_or("")
}

fn fill_contact_name(c: &mut Rec) {
    if c.data.get("display_name").is_none_or(Value::is_null) {
        let name = format!(
            "{} {}",
            str_field(&c.data, "first_name"),
            str_field(&c.data, "last_name")
        )
        .trim()
        .to_owned();
        c.data.insert("display_name".into(), Value::String(name));
    }
}

fn fill_account_name(a: &mut Rec, primary: Option<&Value>) {
    if a.data.get("display_name").is_some_and(|v| !v.is_null()) {
        return;
    }
    let company = str_field(&a.data, "company_name");
    let name = if !company.is_empty() {
        company.to_owned()
    } else if let Some(Value::Object(p)) = primary {
        format!(
            "{}, {}",
            str_field(p, "last_name"),
            str_field(p, "first_name")
        )
    } else {
        String::new()
    };
    a.data.insert("display_name".into(), Value::String(name));
}

fn fill_matter_name(m: &mut Rec) {
    if m.data.get("display_name").is_none_or(Value::is_null) {
        let number = m.data.get("number").and_then(Value::as_i64).unwrap_or(0);
        let name = format!("{number} - {}", str_field(&m.data, "name"));
        m.data.insert("display_name".into(), Value::String(name));
    }
}

fn cmp_field(res: Res, a: &Rec, b: &Rec, field: &str) -> std::cmp::Ordering {
    match field {
        "id" => table_key(res, &a.id).cmp(&table_key(res, &b.id)),
        "created_at" => a.created.cmp(&b.created),
        "updated_at" => a.updated.cmp(&b.updated),
        f => cmp_json(a.data.get(f), b.data.get(f)),
    }
}

/// SQL-ish ordering: nulls first, then booleans, numbers, strings (case-insensitive).
fn cmp_json(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            _ => 4,
        }
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => match (parse_ts(x), parse_ts(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.to_lowercase().cmp(&y.to_lowercase()),
        },
        (Some(x @ (Value::Object(_) | Value::Array(_))), Some(y)) if rank(Some(y)) == 4 => {
            x.to_string().cmp(&y.to_string())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod select_page_tests {
    use super::*;

    #[test]
    fn a_page_equals_the_slice_of_the_sorted_selection() {
        let store = crate::dataset::generate(7, 0.02, 1_767_225_600);
        let by = |terms: &[(&str, bool)]| -> Vec<OrderTerm> {
            terms
                .iter()
                .map(|(f, d)| OrderTerm {
                    field: f.to_string(),
                    desc: *d,
                })
                .collect()
        };
        let orders = [
            by(&[("updated_at", false), ("id", false)]),
            by(&[("updated_at", false)]),
            by(&[("status", true)]),
            by(&[("id", false)]),
            by(&[("id", true)]),
            by(&[("status", false), ("id", true)]),
            by(&[]),
        ];
        let mut store = store;
        for round in 0..2 {
            for res in [
                Res::Tasks,
                Res::TimeEntries,
                Res::Invoices,
                Res::Contacts,
                Res::Accounts,
            ] {
                // The median `updated_at`, and a stamp many records share (ties at the bound).
                let mut stamps: Vec<i64> = store.table(res).values().map(|r| r.updated).collect();
                stamps.sort_unstable();
                let since = |t: i64| vec![(Filt::UpdatedSince, Arg::Ts(t))];
                let conds = [
                    vec![],
                    since(stamps[stamps.len() / 2]),
                    since(stamps[stamps.len() - 1] + 1),
                    [since(stamps[0]), since(stamps[stamps.len() / 3])].concat(),
                ];
                for cond in &conds {
                    for order in &orders {
                        let all = store.select(res, cond, order);
                        for (skip, take) in
                            [(0, 7), (5, 40), (0, usize::MAX), (30, 1000), (1000, 5)]
                        {
                            // Ids and what is sent: the order caches the rendered bytes.
                            let want: Vec<(&str, &[u8])> = all
                                .iter()
                                .skip(skip)
                                .take(take)
                                .map(|r| (r.id.as_str(), &r.bytes[..]))
                                .collect();
                            let page = store.select_page(res, cond, order, skip, take);
                            let got: Vec<(&str, &[u8])> =
                                page.iter().map(|r| (r.id, &r.bytes[..])).collect();
                            assert_eq!(got, want, "{res:?} {cond:?} {order:?} {skip} {take}");
                        }
                    }
                }
            }
            if round == 0 {
                // Changes after the `updated_at` order was built: edits move records (some to a
                // stamp others share), a deletion removes one; the next pages must show it.
                for res in [Res::Tasks, Res::TimeEntries, Res::Invoices, Res::Contacts] {
                    let ids: Vec<String> =
                        store.table(res).values().map(|r| r.id.clone()).collect();
                    let late = store
                        .table(res)
                        .values()
                        .map(|r| r.updated)
                        .max()
                        .unwrap_or(0);
                    for (i, id) in ids.iter().step_by(7).enumerate() {
                        store
                            .set_updated(res, id, late + (i as i64 % 3))
                            .expect("an existing record");
                    }
                    store
                        .delete(res, &ids[1], late)
                        .expect("an existing record");
                }
                // A contact's edit re-renders its account (which embeds it), whose listed bytes
                // must follow.
                let contacts: Vec<String> = store
                    .table(Res::Contacts)
                    .values()
                    .filter(|c| c.ref_id("account_ref").is_some())
                    .step_by(5)
                    .map(|c| c.id.clone())
                    .collect();
                for id in &contacts {
                    store
                        .edit(
                            Res::Contacts,
                            id,
                            serde_json::json!({"email": "moved@example.com"}),
                            1_767_225_601,
                        )
                        .expect("an existing contact");
                }
            }
        }
    }
}
