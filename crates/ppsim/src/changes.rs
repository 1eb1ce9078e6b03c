//! The change generator: what the firm's staff do while time passes.
//!
//! Rates are per 15 simulated minutes (the seed's figures: 5–20 matters, 2–10 accounts, 1–5 tasks)
//! and are scaled to the interval. Each change happens at an instant inside `(old_now, new_now]`
//! and is applied in time order, so `updated_at` only moves forward. Draws come from the sim's
//! seeded RNG: the same sequence of advances over the same firm makes the same changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::dataset::{AccRef, Builder, Ctx, MatRef, contact_ref, new_uuid, s, stamp_precision};
use crate::model::Res;
use crate::store::Store;
use crate::time::TICKS_PER_SEC;

/// A uniform draw of changes per 15 simulated minutes.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    pub min: f64,
    pub max: f64,
}

const fn rate(min: f64, max: f64) -> Rate {
    Rate { min, max }
}

/// Changes per 15 simulated minutes, per resource (creations and edits together).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChangeRates {
    pub matters: Rate,
    pub accounts: Rate,
    /// Edits of contacts on their own (new contacts also come with new accounts).
    pub contacts: Rate,
    pub tasks: Rate,
    pub events: Rate,
    pub notes: Rate,
    pub call_logs: Rate,
    pub emails: Rate,
    pub time_entries: Rate,
    pub expenses: Rate,
    pub flat_fees: Rate,
    pub invoices: Rate,
    pub payments: Rate,
    pub files: Rate,
    pub relationships: Rate,
    pub messages: Rate,
    /// Deletions across resources, per simulated hour.
    pub deletions_per_hour: f64,
}

impl Default for ChangeRates {
    /// The seed's rates, and proportionate ones for the rest.
    fn default() -> Self {
        ChangeRates {
            matters: rate(5.0, 20.0),
            accounts: rate(2.0, 10.0),
            contacts: rate(0.5, 2.0),
            tasks: rate(1.0, 5.0),
            events: rate(1.0, 4.0),
            notes: rate(2.0, 6.0),
            call_logs: rate(0.5, 2.0),
            emails: rate(3.0, 8.0),
            time_entries: rate(3.0, 10.0),
            // The daily tier: a few a day.
            expenses: rate(0.05, 0.3),
            flat_fees: rate(0.02, 0.1),
            invoices: rate(0.03, 0.1),
            payments: rate(0.03, 0.08),
            files: rate(0.5, 2.0),
            relationships: rate(0.05, 0.2),
            messages: rate(0.2, 0.6),
            deletions_per_hour: 1.0,
        }
    }
}

impl ChangeRates {
    /// No changes at all (advances only move the clock).
    pub fn none() -> Self {
        let z = rate(0.0, 0.0);
        ChangeRates {
            matters: z,
            accounts: z,
            contacts: z,
            tasks: z,
            events: z,
            notes: z,
            call_logs: z,
            emails: z,
            time_entries: z,
            expenses: z,
            flat_fees: z,
            invoices: z,
            payments: z,
            files: z,
            relationships: z,
            messages: z,
            deletions_per_hour: 0.0,
        }
    }

    /// `(resource, rate, share of changes that are creations)`.
    fn table(&self) -> [(Res, Rate, f64); 16] {
        [
            (Res::Matters, self.matters, 0.35),
            (Res::Accounts, self.accounts, 0.5),
            (Res::Contacts, self.contacts, 0.0),
            (Res::Tasks, self.tasks, 0.6),
            (Res::Events, self.events, 0.5),
            (Res::Notes, self.notes, 0.8),
            (Res::CallLogs, self.call_logs, 0.9),
            (Res::Emails, self.emails, 0.9),
            (Res::TimeEntries, self.time_entries, 0.7),
            (Res::Expenses, self.expenses, 0.7),
            (Res::FlatFees, self.flat_fees, 0.7),
            (Res::Invoices, self.invoices, 0.6),
            (Res::Payments, self.payments, 0.7),
            (Res::Files, self.files, 0.8),
            (Res::Relationships, self.relationships, 0.7),
            (Res::Messages, self.messages, 0.8),
        ]
    }
}

/// What an advance changed, per resource: distinct records created (and still live), distinct
/// pre-existing records edited, and pre-existing records deleted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChangeSummary {
    pub created: BTreeMap<String, u32>,
    pub edited: BTreeMap<String, u32>,
    pub deleted: BTreeMap<String, u32>,
    /// The ids counted in `created`, per resource (what a client could have seen appear).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub created_ids: BTreeMap<String, Vec<String>>,
    /// The ids counted in `deleted`, per resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted_ids: BTreeMap<String, Vec<String>>,
}

impl ChangeSummary {
    /// Records created or edited in `resource` (what `updated_since=<old now>` returns).
    pub fn touched(&self, resource: &str) -> u32 {
        self.created.get(resource).copied().unwrap_or(0)
            + self.edited.get(resource).copied().unwrap_or(0)
    }
}

/// Tracks distinct ids while changes apply.
#[derive(Default)]
pub struct Tally {
    created: BTreeMap<Res, BTreeSet<String>>,
    edited: BTreeMap<Res, BTreeSet<String>>,
    deleted: BTreeMap<Res, BTreeSet<String>>,
}

impl Tally {
    pub fn created(&mut self, res: Res, id: &str) {
        self.created.entry(res).or_default().insert(id.to_owned());
    }

    pub fn edited(&mut self, res: Res, id: &str) {
        if !self.created.get(&res).is_some_and(|s| s.contains(id)) {
            self.edited.entry(res).or_default().insert(id.to_owned());
        }
    }

    pub fn deleted(&mut self, res: Res, id: &str) {
        let was_new = self.created.get_mut(&res).is_some_and(|s| s.remove(id));
        if let Some(s) = self.edited.get_mut(&res) {
            s.remove(id);
        }
        if !was_new {
            self.deleted.entry(res).or_default().insert(id.to_owned());
        }
    }

    pub fn summary(&self) -> ChangeSummary {
        let count = |m: &BTreeMap<Res, BTreeSet<String>>| {
            m.iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(r, s)| (r.name().to_owned(), s.len() as u32))
                .collect()
        };
        let ids = |m: &BTreeMap<Res, BTreeSet<String>>| {
            m.iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(r, s)| (r.name().to_owned(), s.iter().cloned().collect()))
                .collect()
        };
        ChangeSummary {
            created: count(&self.created),
            edited: count(&self.edited),
            deleted: count(&self.deleted),
            created_ids: ids(&self.created),
            deleted_ids: ids(&self.deleted),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Create,
    Edit,
    Delete,
}

const SLOT: i64 = 15 * 60 * TICKS_PER_SEC;
const HOUR: i64 = 3600 * TICKS_PER_SEC;

/// Which resources lose records, and how often relative to each other.
const DELETABLE: &[(Res, f64)] = &[
    (Res::Tasks, 3.0),
    (Res::Notes, 2.0),
    (Res::Events, 2.0),
    (Res::TimeEntries, 2.0),
    (Res::Emails, 1.0),
    (Res::Files, 1.0),
    (Res::CallLogs, 0.5),
    (Res::Relationships, 0.5),
    (Res::Matters, 0.5),
    (Res::Expenses, 0.3),
    (Res::Accounts, 0.2),
    (Res::Contacts, 0.2),
];

/// Draws a count from `[min, max]` scaled by `frac`, rounding stochastically.
fn draw(rng: &mut ChaCha8Rng, r: Rate, frac: f64) -> u32 {
    if r.max <= 0.0 {
        return 0;
    }
    let x = if r.max > r.min {
        rng.random_range(r.min..=r.max)
    } else {
        r.min
    } * frac;
    let whole = x.floor();
    let extra = rng.random_bool((x - whole).clamp(0.0, 1.0));
    whole as u32 + u32::from(extra)
}

/// What the generator reads of the firm to make changes (who can be assigned, what a new record
/// can refer to, which records can be edited), kept from one advance to the next: building it reads
/// some 40,000 records scattered over the heap, ~120 ms at the seed's scale, which was most of an
/// advance and most of a simulated day's time. It holds while the store is at the version it was
/// stamped with: a change made anywhere else (the control API, a test, a request) has it rebuilt.
#[derive(Default)]
pub struct Memo {
    version: Option<u64>,
    ctx: Ctx,
    /// Per resource, ids drawn from the whole table (a deleted one is dropped when drawn).
    keys: HashMap<Res, Vec<String>>,
}

impl Memo {
    /// The context, rebuilt if the store changed since it was last stamped.
    pub fn ctx(&mut self, store: &Store) -> &mut Ctx {
        if self.version != Some(store.version()) {
            self.ctx = Ctx::from_store(store);
            self.keys.clear();
            self.version = Some(store.version());
        }
        &mut self.ctx
    }

    /// The memo saw every change made since [`Memo::ctx`]: it holds for the store as it is now.
    pub fn stamp(&mut self, store: &Store) {
        self.version = Some(store.version());
    }

    /// A change the memo cannot follow: the next use rebuilds it.
    fn forget(&mut self) {
        self.version = None;
    }
}

/// Runs the generator over `(old, new]`. `skew` is added to every stamp (the ClockSkew fault).
pub fn run(
    store: &mut Store,
    rng: &mut ChaCha8Rng,
    memo: &mut Memo,
    rates: &ChangeRates,
    old: i64,
    new: i64,
    skew: i64,
) -> ChangeSummary {
    // Plan: every change with its instant, then apply in time order.
    let mut plan: Vec<(i64, Res, Kind)> = vec![];
    let mut t = old;
    while t < new {
        let end = (t + SLOT).min(new);
        let frac = (end - t) as f64 / SLOT as f64;
        let at = |rng: &mut ChaCha8Rng| t + 1 + rng.random_range(0..(end - t).max(1));
        for (res, r, create_share) in rates.table() {
            for _ in 0..draw(rng, r, frac) {
                let kind = if rng.random_bool(create_share) {
                    Kind::Create
                } else {
                    Kind::Edit
                };
                plan.push((at(rng), res, kind));
            }
        }
        let per_hour = rate(rates.deletions_per_hour, rates.deletions_per_hour);
        for _ in 0..draw(rng, per_hour, (end - t) as f64 / HOUR as f64) {
            let total: f64 = DELETABLE.iter().map(|(_, w)| w).sum();
            let mut x = rng.random_range(0.0..total);
            let mut res = DELETABLE[0].0;
            for (r, w) in DELETABLE {
                if x < *w {
                    res = *r;
                    break;
                }
                x -= w;
            }
            plan.push((at(rng), res, Kind::Delete));
        }
        t = end;
    }
    plan.sort_by_key(|(t, _, _)| *t);

    let mut tally = Tally::default();
    if plan.is_empty() {
        return tally.summary();
    }
    memo.ctx(store);
    let Memo { ctx, keys, .. } = memo;
    // A deleted account, matter, contact or task stays in the context to the end of this
    // advance (a record made later in it may name it, as staff's work crosses a deletion), then
    // the context is rebuilt.
    let mut ctx_outdated = false;
    let mut idrng_seed = [0u8; 32];
    rng.fill(&mut idrng_seed);
    let mut idrng = <ChaCha8Rng as rand::SeedableRng>::from_seed(idrng_seed);
    let mut new_id = move || -> Uuid { new_uuid(&mut idrng) };
    for (at, res, kind) in plan {
        let stamp = stamp_precision(rng, at + skew, old + skew);
        match kind {
            Kind::Create => {
                let Some(made) = create_one(store, rng, ctx, res, stamp, &mut new_id) else {
                    continue;
                };
                for (r, id) in made {
                    tally.created(r, &id);
                    // Only extend a key list already drawn from the whole table: starting one
                    // here would hide every older record from later edits.
                    if let Some(list) = keys.get_mut(&r) {
                        list.push(id);
                    }
                }
            }
            Kind::Edit => {
                let Some(id) = pick_live(store, rng, keys, res) else {
                    continue;
                };
                if let Ok(touched) = edit_one(store, rng, ctx, res, &id, stamp) {
                    for (r, id) in touched {
                        tally.edited(r, &id);
                    }
                }
            }
            Kind::Delete => {
                let Some(id) = pick_live(store, rng, keys, res) else {
                    continue;
                };
                if let Ok((deleted, edited)) = store.delete(res, &id, stamp) {
                    for (r, id) in deleted {
                        ctx_outdated |= Ctx::REFERS_TO.contains(&r);
                        tally.deleted(r, &id);
                    }
                    for (r, id) in edited {
                        tally.edited(r, &id);
                    }
                }
            }
        }
    }
    if ctx_outdated {
        memo.forget();
    } else {
        memo.stamp(store);
    }
    tally.summary()
}

/// A random live record of `res` (the key list is built once per advance).
fn pick_live(
    store: &Store,
    rng: &mut ChaCha8Rng,
    keys: &mut HashMap<Res, Vec<String>>,
    res: Res,
) -> Option<String> {
    let list = keys
        .entry(res)
        .or_insert_with(|| store.table(res).values().map(|r| r.id.clone()).collect());
    for _ in 0..8 {
        if list.is_empty() {
            return None;
        }
        let i = rng.random_range(0..list.len());
        if store.get(res, &list[i]).is_some() {
            return Some(list[i].clone());
        }
        list.swap_remove(i);
    }
    None
}

/// Creates one record of `res` stamped `stamp`; returns every record made.
pub fn create_one(
    store: &mut Store,
    rng: &mut ChaCha8Rng,
    ctx: &mut Ctx,
    res: Res,
    stamp: i64,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Option<Vec<(Res, String)>> {
    if ctx.accounts.is_empty() && res != Res::Accounts {
        return None;
    }
    let value = match res {
        Res::Accounts => Builder { rng, ctx }.account(),
        Res::Matters => {
            let a = rng.random_range(0..ctx.accounts.len());
            Builder { rng, ctx }.matter(a, stamp, stamp)
        }
        Res::Contacts => return None,
        _ => Builder { rng, ctx }.activity(res, stamp, Some(stamp)).0,
    };
    let made = store.create(res, value, stamp, new_id).ok()?;
    // Later changes may refer to what was just made (the context is kept across advances).
    for (r, id) in made.iter().skip(1) {
        if *r == Res::Contacts
            && let Some(rec) = store.get(Res::Contacts, id)
        {
            ctx.contacts.push(contact_ref(rec));
        }
    }
    if let Some((_, id)) = made.first()
        && let Some(rec) = store.get(res, id)
    {
        let display = rec
            .data
            .get("display_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match res {
            Res::Accounts => ctx.accounts.push(AccRef {
                id: id.clone(),
                display,
                created: stamp,
            }),
            Res::Matters => {
                let acc = rec.ref_id("account_ref").unwrap_or("");
                if let Some(account) = ctx.accounts.iter().rposition(|a| a.id == acc) {
                    ctx.matters.push(MatRef {
                        id: id.clone(),
                        display,
                        account,
                        created: stamp,
                    });
                }
            }
            Res::Tasks if ctx.tasks.len() < Ctx::TASKS => {
                ctx.tasks.push((id.clone(), s(&rec.data, "subject")));
            }
            _ => {}
        }
    }
    Some(made)
}

/// Edits one record as staff would, stamped `stamp`.
pub fn edit_one(
    store: &mut Store,
    rng: &mut ChaCha8Rng,
    ctx: &mut Ctx,
    res: Res,
    id: &str,
    stamp: i64,
) -> anyhow::Result<Vec<(Res, String)>> {
    let rec = store
        .get(res, id)
        .ok_or_else(|| anyhow::anyhow!("no {} {id}", res.name()))?
        .clone();
    let patch = Builder { rng, ctx }.edit_patch(res, &rec, stamp);
    store.edit(res, id, patch, stamp)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use serde_json::json;

    use super::*;
    use crate::dataset::generate;

    const START: i64 = 1_700_000_000 * TICKS_PER_SEC;

    /// Ids the context names, per kind, sorted (its order may differ from a fresh build's).
    fn names(ctx: &Ctx) -> [Vec<String>; 4] {
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        [
            sorted(ctx.accounts.iter().map(|a| a.id.clone()).collect()),
            sorted(ctx.matters.iter().map(|m| m.id.clone()).collect()),
            sorted(
                ctx.contacts
                    .iter()
                    .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
                    .collect(),
            ),
            sorted(ctx.users.iter().map(|u| u["id"].to_string()).collect()),
        ]
    }

    #[test]
    fn the_memo_follows_the_generators_changes_and_is_rebuilt_after_any_other() {
        let mut store = generate(7, 0.02, START);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut memo = Memo::default();
        let busy = ChangeRates {
            deletions_per_hour: 0.0,
            ..ChangeRates::default()
        };
        // Hours of creations and edits, no deletions: the kept context names exactly what a
        // fresh one would, new accounts' contacts included.
        let mut t = START;
        for _ in 0..8 {
            let s = run(&mut store, &mut rng, &mut memo, &busy, t, t + HOUR, 0);
            assert!(s.created.get("accounts").is_some_and(|n| *n > 0), "{s:?}");
            t += HOUR;
            let before = memo.version;
            assert_eq!(names(memo.ctx(&store)), names(&Ctx::from_store(&store)));
            assert_eq!(memo.version, before, "the memo was kept, not rebuilt");
        }
        // A change from outside the generator: the next use rebuilds the context.
        let made = store
            .create(
                Res::Accounts,
                json!({"display_name": "Outside, Inc."}),
                t,
                &mut || Uuid::new_v4(),
            )
            .expect("create an account");
        let ctx = memo.ctx(&store);
        assert!(ctx.accounts.iter().any(|a| a.id == made[0].1));
        assert_eq!(names(ctx), names(&Ctx::from_store(&store)));
        // Deletions of what the context names: forgotten at the end of the advance.
        let deleting = ChangeRates {
            deletions_per_hour: 400.0,
            ..ChangeRates::none()
        };
        let s = run(&mut store, &mut rng, &mut memo, &deleting, t, t + HOUR, 0);
        assert!(
            Ctx::REFERS_TO
                .iter()
                .any(|r| s.deleted.contains_key(r.name())),
            "{s:?}"
        );
        assert_eq!(memo.version, None);
        assert_eq!(names(memo.ctx(&store)), names(&Ctx::from_store(&store)));
    }
}
