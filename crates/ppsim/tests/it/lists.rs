//! Lists: shapes, whole collections, routing, paging, ordering, the invoice cap, every filter,
//! malformed input, GET by id.

use std::collections::BTreeSet;

use crate::support::*;
use ppsim::SimHandle;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn every_list_is_a_bare_array_of_the_whole_collection() {
    let sim = spawn(quiet()).await;
    let tok = access(&sim).await;
    assert_eq!(sim.resources().len(), 26);
    for res in sim.resources() {
        let got = get(&sim, &tok, &format!("/api/v2/{res}")).await;
        assert_eq!(got.status, StatusCode::OK, "{res}");
        assert_eq!(
            got.headers["content-type"],
            "application/json; charset=utf-8"
        );
        let list = got.array();
        assert!(!list.is_empty(), "{res} is empty");
        assert_eq!(list, sim.truth(&res), "{res} differs from the truth");
    }
    // Routes are case-insensitive.
    for (a, b) in [
        ("/api/v2/Expenses", "/api/v2/expenses"),
        ("/api/v2/ExpenseCategories", "/api/v2/expensecategories"),
        ("/api/v2/Items", "/api/v2/items"),
        ("/API/V2/CustomFields/Matter", "/api/v2/customfields/matter"),
        ("/api/v2/Tags/Activity", "/api/v2/tags/activity"),
        ("/api/v2/Users/Me", "/api/v2/users/me"),
    ] {
        let (x, y) = (get(&sim, &tok, a).await, get(&sim, &tok, b).await);
        assert_eq!(x.status, StatusCode::OK, "{a}");
        assert_eq!(x.body, y.body, "{a} vs {b}");
    }
    let me = get(&sim, &tok, "/api/v2/users/me").await.json();
    assert_eq!(me["display_name"], "Dana Whitfield");
}

#[tokio::test]
async fn shapes_follow_the_spec() {
    let sim = spawn(quiet()).await;
    let acc = &sim.truth("accounts")[0];
    for k in [
        "id",
        "display_name",
        "number",
        "company_name",
        "address_street_1",
        "address_street_2",
        "address_city",
        "address_state",
        "address_country",
        "address_zip_code",
        "tags",
        "company_custom_field_values",
        "assigned_to_users",
        "created_at",
        "updated_at",
        "notes",
        "primary_contact",
        "other_contacts",
    ] {
        assert!(acc.get(k).is_some(), "account lacks {k}");
    }
    assert_eq!(acc["primary_contact"]["is_primary_contact"], true);
    assert_eq!(acc["primary_contact"]["account_ref"]["id"], acc["id"]);

    // Contacts have no timestamps, and the embedded copy equals the /contacts record.
    let contacts = sim.truth("contacts");
    assert!(
        contacts
            .iter()
            .all(|c| c.get("created_at").is_none() && c.get("updated_at").is_none())
    );
    let pc = &acc["primary_contact"];
    assert!(contacts.iter().any(|c| c == pc));
    assert!(
        contacts.len() > sim.truth("accounts").len(),
        "some accounts have other contacts"
    );

    // Timestamps: no offset, 0-7 fraction digits, trailing zeros trimmed, a mix of precisions.
    let mut digits = BTreeSet::new();
    for m in sim.truth("matters").iter().chain(sim.truth("tasks").iter()) {
        for f in ["created_at", "updated_at"] {
            let s = m[f].as_str().unwrap();
            assert!(!s.ends_with('Z') && !s.contains('+'), "{s}");
            let frac = s.split_once('.').map(|(_, f)| f).unwrap_or("");
            assert!(frac.len() <= 7 && !frac.ends_with('0'), "{s}");
            digits.insert(frac.len());
        }
    }
    assert!(
        digits.contains(&0) && digits.contains(&3) && digits.contains(&7),
        "{digits:?}"
    );

    // Business dates are firm-local noon/midnight instants without a fraction.
    for m in sim.truth("matters") {
        let d = m["open_date"].as_str().unwrap();
        assert!(d.ends_with("T19:00:00") || d.ends_with("T20:00:00"), "{d}");
    }
    for t in sim.truth("tasks") {
        if let Some(d) = t["due_date"].as_str() {
            assert!(d.ends_with("T07:00:00") || d.ends_with("T08:00:00"), "{d}");
        }
    }
    // Messages use the Z + 7 digit form.
    let msg = &sim.truth("messages")[0];
    let c = msg["created_at"].as_str().unwrap();
    assert!(
        c.ends_with('Z') && c.len() == "2026-04-04T06:20:36.3934413Z".len(),
        "{c}"
    );
    // Custom field values carry every value_* key.
    let cfv = sim
        .truth("matters")
        .iter()
        .flat_map(|m| m["custom_field_values"].as_array().unwrap().clone())
        .next()
        .unwrap();
    for k in [
        "custom_field_ref",
        "value_boolean",
        "contact_ref",
        "value_date_time",
        "value_number",
        "value_string",
    ] {
        assert!(cfv.get(k).is_some(), "cfv lacks {k}");
    }
    // Tags: name and created_at only.
    let tag = &sim.truth("tags/matter")[0];
    assert_eq!(tag.as_object().unwrap().len(), 2);
    // Email lists have no body_html.
    assert!(
        sim.truth("emails")
            .iter()
            .all(|e| e.get("body_html").is_none())
    );
    assert!(
        sim.truth("payments")
            .iter()
            .all(|p| p.get("refundedAmount").is_none())
    );
}

#[tokio::test]
async fn get_by_id_404_and_400() {
    let sim = spawn(quiet()).await;
    let tok = access(&sim).await;
    let m = &sim.truth("matters")[3];
    let got = get(
        &sim,
        &tok,
        &format!("/api/v2/matters/{}", m["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(got.json(), *m);
    let upper = m["id"].as_str().unwrap().to_uppercase();
    assert_eq!(
        get(&sim, &tok, &format!("/api/v2/Matters/{upper}"))
            .await
            .json(),
        *m
    );

    let e = &sim.truth("emails")[0];
    let got = get(
        &sim,
        &tok,
        &format!("/api/v2/emails/{}", e["id"].as_str().unwrap()),
    )
    .await
    .json();
    assert!(got["body_html"].as_str().unwrap().contains("<html>"));
    let p = &sim.truth("payments")[0];
    let got = get(
        &sim,
        &tok,
        &format!("/api/v2/payments/{}", p["id"].as_str().unwrap()),
    )
    .await
    .json();
    assert!(got["refundedAmount"].is_number());

    let cf = &sim.truth("customfields/contact")[0];
    let got = get(
        &sim,
        &tok,
        &format!("/api/v2/customfields/{}", cf["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(got.json(), *cf);

    let unknown = "6fa373c0-32b8-497b-a139-2b9897ceb28c";
    let got = get(&sim, &tok, &format!("/api/v2/accounts/{unknown}")).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert!(got.json()["message"].is_string());
    let got = get(&sim, &tok, "/api/v2/accounts/not-a-guid").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.json()["message"], "The request is invalid.");
    let got = get(&sim, &tok, "/api/v2/nothing").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn paging_and_ordering() {
    let sim = spawn(quiet()).await;
    let tok = access(&sim).await;
    let all = get(&sim, &tok, "/api/v2/tasks").await.ids();
    assert!(all.len() > 150);
    let mut paged = vec![];
    for page in 0.. {
        let got = get(
            &sim,
            &tok,
            &format!("/api/v2/tasks?$top=70&$skip={}", page * 70),
        )
        .await
        .ids();
        let n = got.len();
        paged.extend(got);
        if n < 70 {
            break;
        }
    }
    assert_eq!(paged, all);
    assert!(
        get(&sim, &tok, "/api/v2/tasks?$top=0")
            .await
            .array()
            .is_empty()
    );
    assert!(
        get(&sim, &tok, "/api/v2/tasks?$skip=100000")
            .await
            .array()
            .is_empty()
    );
    // Non-OData paging parameters are ignored.
    assert_eq!(
        get(&sim, &tok, "/api/v2/tasks?limit=5&page=2").await.ids(),
        all
    );

    let desc = get(&sim, &tok, "/api/v2/tasks?$orderby=updated_at%20desc")
        .await
        .array();
    let stamps: Vec<_> = desc
        .iter()
        .map(|t| field_ts(t, "updated_at").unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]));
    // '+' decodes to a space: `updated_at+asc`.
    let asc = get(&sim, &tok, "/api/v2/tasks?$orderby=updated_at+asc,id")
        .await
        .array();
    let stamps: Vec<_> = asc
        .iter()
        .map(|t| field_ts(t, "updated_at").unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    let names = get(&sim, &tok, "/api/v2/items?$orderby=name").await.array();
    let names: Vec<String> = names
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]));
    let by_id = get(&sim, &tok, "/api/v2/tasks?$orderby=id%20asc")
        .await
        .ids();
    assert_eq!(by_id, all);
    let created = get(
        &sim,
        &tok,
        "/api/v2/matters?$orderby=created_at&$top=5&$skip=2",
    )
    .await
    .array();
    assert_eq!(created.len(), 5);

    for bad in [
        "$orderby=nope",
        "$orderby=updated_at%20sideways",
        "$top=abc",
        "$skip=-1",
    ] {
        let got = get(&sim, &tok, &format!("/api/v2/tasks?{bad}")).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Contacts don't render updated_at, so they can't be ordered by it.
    let got = get(&sim, &tok, "/api/v2/contacts?$orderby=updated_at").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
}

/// SQL Server uniqueidentifier order: last 6 bytes first, then bytes 8-9, 6-7, 4-5, 0-3.
fn guid_key(id: &str) -> Vec<u8> {
    let b = uuid::Uuid::parse_str(id).unwrap().into_bytes();
    let mut k = b[10..16].to_vec();
    k.extend_from_slice(&[b[8], b[9], b[6], b[7], b[4], b[5], b[0], b[1], b[2], b[3]]);
    k
}

#[tokio::test]
async fn invoices_stop_silently_at_2500_in_id_order() {
    let sim = spawn(quiet()).await;
    let tok = access(&sim).await;
    let template = sim.truth("invoices")[0].clone();
    for _ in 0..2600 {
        let mut inv = template.clone();
        inv.as_object_mut().unwrap().remove("id");
        sim.create("invoices", inv).unwrap();
    }
    let truth = ids(&sim.truth("invoices"));
    assert!(truth.len() > 2600);
    let mut sorted = truth.clone();
    sorted.sort_by_key(|i| guid_key(i));
    assert_eq!(truth, sorted, "truth is in SQL Server guid order");

    let got = get(&sim, &tok, "/api/v2/invoices").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.ids(), truth[..2500].to_vec());
    assert_eq!(
        get(&sim, &tok, "/api/v2/invoices?$top=3000")
            .await
            .ids()
            .len(),
        2500
    );
    assert_eq!(
        get(&sim, &tok, "/api/v2/invoices?$top=2500&$skip=2500")
            .await
            .ids(),
        truth[2500..].to_vec()
    );
    assert_eq!(
        get(&sim, &tok, "/api/v2/invoices?$top=100&$skip=50")
            .await
            .ids(),
        truth[50..150].to_vec()
    );
    // Other lists are not capped.
    let note = sim.truth("notes")[0].clone();
    for _ in 0..2600 {
        let mut n = note.clone();
        n.as_object_mut().unwrap().remove("id");
        sim.create("notes", n).unwrap();
    }
    assert_eq!(
        get(&sim, &tok, "/api/v2/notes").await.ids().len(),
        sim.truth("notes").len()
    );
}

/// Asserts that `GET /api/v2/{res}?{query}` returns exactly the truth records `keep` accepts,
/// and that the filter is not vacuous (it keeps some and drops some).
async fn check(sim: &SimHandle, tok: &str, res: &str, query: &str, keep: impl Fn(&Value) -> bool) {
    let truth = sim.truth(res);
    let want: Vec<String> = ids(&truth
        .iter()
        .filter(|r| keep(r))
        .cloned()
        .collect::<Vec<_>>());
    let got = get(sim, tok, &format!("/api/v2/{res}?{query}")).await;
    assert_eq!(got.status, StatusCode::OK, "{res}?{query}: {:?}", got.body);
    assert_eq!(got.ids(), want, "{res}?{query}");
    assert!(
        !want.is_empty(),
        "{res}?{query} keeps nothing: a vacuous test"
    );
    assert!(
        want.len() < truth.len(),
        "{res}?{query} keeps everything: a vacuous test"
    );
}

fn ref_id<'a>(r: &'a Value, f: &str) -> &'a str {
    r[f]["id"].as_str().unwrap_or("")
}

/// The most common value of `f(record)` in a resource (so filters keep several records).
fn common_value(sim: &SimHandle, res: &str, f: impl Fn(&Value) -> Vec<String>) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in sim.truth(res) {
        for v in f(&r) {
            if !v.is_empty() {
                *counts.entry(v).or_default() += 1;
            }
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).unwrap().0
}

#[tokio::test]
async fn every_filter_keeps_exactly_the_matching_records() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let s = &sim;

    // created_since / updated_since, inclusive, in every accepted form.
    for res in [
        "accounts",
        "matters",
        "tasks",
        "events",
        "notes",
        "calllogs",
        "emails",
        "timeentries",
        "expenses",
        "flatfees",
        "invoices",
        "payments",
        "users",
        "files",
        "items",
    ] {
        let truth = sim.truth(res);
        let mut stamps: Vec<_> = truth
            .iter()
            .map(|r| field_ts(r, "updated_at").unwrap())
            .collect();
        stamps.sort();
        let cut = stamps[stamps.len() / 2];
        check(s, tok, res, &format!("updated_since={}", zulu(cut)), |r| {
            field_ts(r, "updated_at").unwrap() >= cut
        })
        .await;
        let mut created: Vec<_> = truth
            .iter()
            .map(|r| field_ts(r, "created_at").unwrap())
            .collect();
        created.sort();
        let cut = created[created.len() / 3];
        check(s, tok, res, &format!("created_since={}", zulu(cut)), |r| {
            field_ts(r, "created_at").unwrap() >= cut
        })
        .await;
    }
    let cut = field_ts(&sim.truth("matters")[5], "updated_at").unwrap();
    let keep = |r: &Value| field_ts(r, "updated_at").unwrap() >= cut;
    let naive = cut.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    check(s, tok, "matters", &format!("updated_since={naive}"), keep).await;
    let plus2 = (cut + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%S%.f%%2B02:00")
        .to_string();
    check(s, tok, "matters", &format!("UPDATED_SINCE={plus2}"), keep).await;

    // Ids.
    let acc = common_value(s, "matters", |r| vec![ref_id(r, "account_ref").to_owned()]);
    check(s, tok, "matters", &format!("account_id={acc}"), |r| {
        ref_id(r, "account_ref") == acc
    })
    .await;
    let acc = common_value(s, "contacts", |r| vec![ref_id(r, "account_ref").to_owned()]);
    check(
        s,
        tok,
        "contacts",
        &format!("account_id={}", acc.to_uppercase()),
        |r| ref_id(r, "account_ref") == acc,
    )
    .await;
    for res in [
        "tasks",
        "events",
        "notes",
        "calllogs",
        "emails",
        "timeentries",
        "expenses",
        "flatfees",
        "invoices",
        "payments",
        "files",
    ] {
        let m = common_value(s, res, |r| vec![ref_id(r, "matter_ref").to_owned()]);
        check(s, tok, res, &format!("matter_id={m}"), |r| {
            ref_id(r, "matter_ref") == m
        })
        .await;
        let a = common_value(s, res, |r| vec![ref_id(r, "account_ref").to_owned()]);
        check(s, tok, res, &format!("account_id={a}"), |r| {
            ref_id(r, "account_ref") == a
        })
        .await;
    }
    let users = |r: &Value| -> Vec<String> {
        r["assigned_to_users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for res in [
        "accounts", "matters", "tasks", "events", "notes", "calllogs",
    ] {
        let u = common_value(s, res, users);
        check(s, tok, res, &format!("assigned_to_user_id={u}"), |r| {
            users(r).contains(&u)
        })
        .await;
    }
    // Contacts: by their account's assignment.
    let accounts = sim.truth("accounts");
    let u = common_value(s, "accounts", users);
    let assigned: BTreeSet<String> = accounts
        .iter()
        .filter(|a| users(a).contains(&u))
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    check(
        s,
        tok,
        "contacts",
        &format!("assigned_to_user_id={u}"),
        |r| assigned.contains(ref_id(r, "account_ref")),
    )
    .await;
    // Emails: by hidden assignment: at least every email returned is in the truth.
    let u = common_value(s, "users", |r| vec![r["id"].as_str().unwrap().to_owned()]);
    let got = get(s, tok, &format!("/api/v2/emails?assigned_to_user_id={u}")).await;
    assert_eq!(got.status, StatusCode::OK);

    for (res, param, field) in [
        ("timeentries", "user_id", "billed_by_user_ref"),
        ("timeentries", "item_id", "item_ref"),
        ("flatfees", "user_id", "billed_by_user_ref"),
        ("flatfees", "item_id", "item_ref"),
        ("expenses", "billed_by_user_id", "billed_by_user_ref"),
        ("expenses", "expense_category_id", "expense_category_ref"),
        ("payments", "bank_account_id", "bank_account"),
        ("relationships", "contact_id", "contact_ref"),
        ("relationships", "matter_id", "matter_ref"),
        ("files", "activity_id", "activity_ref"),
    ] {
        let v = common_value(s, res, |r| vec![ref_id(r, field).to_owned()]);
        check(s, tok, res, &format!("{param}={v}"), |r| {
            ref_id(r, field) == v
        })
        .await;
    }
    let a = common_value(s, "relationships", |r| {
        vec![
            r["contact_ref"]["account_ref"]["id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ]
    });
    check(s, tok, "relationships", &format!("account_id={a}"), |r| {
        r["contact_ref"]["account_ref"]["id"] == a
    })
    .await;

    // Enums.
    check(s, tok, "matters", "status=Open", |r| r["status"] == "Open").await;
    check(s, tok, "matters", "status=closed", |r| {
        r["status"] == "Closed"
    })
    .await;
    check(s, tok, "tasks", "status=NotCompleted", |r| {
        r["status"] == "NotCompleted"
    })
    .await;
    check(s, tok, "contacts", "status=Archived", |r| {
        r["status"] == "Archived"
    })
    .await;
    check(s, tok, "payments", "bank_account_type=Trust", |r| {
        r["bank_account"]["type"] == "Trust"
    })
    .await;
    for bad in [
        "matters?status=Nope",
        "payments?bank_account_type=Gold",
        "accounts?apiConsumer=Robot",
    ] {
        assert_eq!(
            get(s, tok, &format!("/api/v2/{bad}")).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    assert_eq!(
        get(s, tok, "/api/v2/accounts?apiConsumer=Zapier")
            .await
            .ids()
            .len(),
        sim.truth("accounts").len()
    );

    // Business-date ranges, inclusive at both ends.
    for (res, field, from, to) in [
        ("events", "start_date_time", "date_from", "date_to"),
        ("notes", "date", "date_from", "date_to"),
        ("calllogs", "date", "date_from", "date_to"),
        ("timeentries", "date", "date_from", "date_to"),
        ("expenses", "date", "date_from", "date_to"),
        ("flatfees", "date", "date_from", "date_to"),
        ("invoices", "issue_date", "date_from", "date_to"),
        ("payments", "date", "date_from", "date_to"),
        ("tasks", "due_date", "due_date_from", "due_date_to"),
    ] {
        let mut dates: Vec<_> = sim
            .truth(res)
            .iter()
            .filter_map(|r| field_ts(r, field))
            .collect();
        dates.sort();
        let (lo, hi) = (dates[dates.len() / 4], dates[dates.len() * 3 / 4]);
        let inside = |r: &Value| field_ts(r, field).is_some_and(|d| d >= lo && d <= hi);
        check(
            s,
            tok,
            res,
            &format!("{from}={}&{to}={}", zulu(lo), zulu(hi)),
            inside,
        )
        .await;
        check(s, tok, res, &format!("{from}={}", zulu(lo)), |r| {
            field_ts(r, field).is_some_and(|d| d >= lo)
        })
        .await;
        check(s, tok, res, &format!("{to}={}", zulu(hi)), |r| {
            field_ts(r, field).is_some_and(|d| d <= hi)
        })
        .await;
    }

    // Tags and text.
    let tags = |r: &Value| -> Vec<String> {
        r["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    for res in ["tasks", "events", "notes", "calllogs", "emails"] {
        let t = common_value(s, res, tags);
        check(
            s,
            tok,
            res,
            &format!("activity_tag={}", t.replace(' ', "%20")),
            |r| tags(r).contains(&t),
        )
        .await;
    }
    let t = common_value(s, "matters", tags);
    check(
        s,
        tok,
        "matters",
        &format!("matter_tag={}", t.replace(' ', "%20")),
        |r| tags(r).contains(&t),
    )
    .await;
    let t = common_value(s, "accounts", tags);
    check(
        s,
        tok,
        "accounts",
        &format!("account_tag={}", t.replace(' ', "%20")),
        |r| tags(r).contains(&t),
    )
    .await;
    let tagged: BTreeSet<String> = accounts
        .iter()
        .filter(|a| tags(a).contains(&t))
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    check(
        s,
        tok,
        "matters",
        &format!("account_tag={}", t.replace(' ', "%20")),
        |r| tagged.contains(ref_id(r, "account_ref")),
    )
    .await;
    check(
        s,
        tok,
        "contacts",
        &format!("account_tag={}", t.replace(' ', "%20")),
        |r| tagged.contains(ref_id(r, "account_ref")),
    )
    .await;
    check(s, tok, "accounts", "search_text=son", |r| {
        let has = |f: &str| {
            r[f].as_str()
                .is_some_and(|v| v.to_lowercase().contains("son"))
        };
        has("display_name") || has("company_name")
    })
    .await;
    let email = sim.truth("users")[2]["email"].as_str().unwrap().to_owned();
    check(
        s,
        tok,
        "users",
        &format!("email_address={}", email.to_uppercase()),
        |r| r["email"] == email,
    )
    .await;
    let mid = sim.truth("emails")[1]["external_message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let enc: String = url::form_urlencoded::byte_serialize(mid.as_bytes()).collect();
    check(
        s,
        tok,
        "emails",
        &format!("external_message_id={enc}"),
        |r| r["external_message_id"] == mid,
    )
    .await;
    // Contacts by company name: create a company account with a contact of its own.
    sim.create("accounts", json!({"company_name": "Zebra Holdings LLC", "primary_contact": {"first_name": "Zed", "last_name": "Zebra"}})).unwrap();
    check(
        s,
        tok,
        "contacts",
        "company_name=zebra%20holdings%20llc",
        |r| r["account_ref"]["display_name"] == "Zebra Holdings LLC",
    )
    .await;

    // Messages and tags take no parameters: anything is ignored, even junk.
    let all = sim.truth("messages").len();
    assert_eq!(
        get(s, tok, "/api/v2/messages?updated_since=junk&$top=1")
            .await
            .array()
            .len(),
        all
    );
    let all = sim.truth("tags/account").len();
    assert_eq!(
        get(s, tok, "/api/v2/tags/account?created_since=junk")
            .await
            .array()
            .len(),
        all
    );
}

#[tokio::test]
async fn hidden_timestamps_still_filter() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let since = zulu(sim.now());
    let contact = sim.truth("contacts")[7].clone();
    let cid = contact["id"].as_str().unwrap();
    sim.edit("contacts", cid, json!({"phone_work": "(949) 555-0199"}))
        .unwrap();
    let got = get(
        &sim,
        tok,
        &format!("/api/v2/contacts?updated_since={since}"),
    )
    .await
    .array();
    assert_eq!(ids(&got), vec![cid.to_owned()]);
    assert_eq!(got[0]["phone_work"], "(949) 555-0199");
    assert!(got[0].get("updated_at").is_none());
    // Its account moved with it, and embeds the new version.
    let accs = get(
        &sim,
        tok,
        &format!("/api/v2/accounts?updated_since={since}"),
    )
    .await
    .array();
    assert_eq!(
        ids(&accs),
        vec![contact["account_ref"]["id"].as_str().unwrap().to_owned()]
    );
    let embedded: Vec<&Value> = std::iter::once(&accs[0]["primary_contact"])
        .chain(accs[0]["other_contacts"].as_array().unwrap())
        .collect();
    assert!(embedded.contains(&&got[0]));

    // Editing an account's primary contact bumps both.
    let since = zulu(sim.now());
    let acc = sim.truth("accounts")[3].clone();
    sim.edit(
        "accounts",
        acc["id"].as_str().unwrap(),
        json!({"primary_contact": {"email": "new@example.com"}}),
    )
    .unwrap();
    let got = get(
        &sim,
        tok,
        &format!("/api/v2/contacts?updated_since={since}"),
    )
    .await
    .array();
    assert_eq!(
        ids(&got),
        vec![acc["primary_contact"]["id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(got[0]["email"], "new@example.com");

    // Relationships, custom fields and bank accounts likewise.
    for res in ["relationships", "customfields/matter", "bankaccounts"] {
        let since = zulu(sim.now());
        let r = sim.truth(res)[0].clone();
        sim.edit(
            res,
            r["id"].as_str().unwrap(),
            json!({"name": "Edited", "label": "Edited"}),
        )
        .unwrap();
        let got = get(&sim, tok, &format!("/api/v2/{res}?updated_since={since}")).await;
        assert_eq!(
            got.ids(),
            vec![r["id"].as_str().unwrap().to_owned()],
            "{res}"
        );
    }
}

#[tokio::test]
async fn malformed_timestamps_and_ids_are_400() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let invalid = json!({"message": "The request is invalid."});
    for q in [
        "updated_since=2026-11-01T00:00:00+00:00", // unencoded '+' decodes to a space
        "updated_since=yesterday",
        "updated_since=2026-11-01",
        "updated_since=2026-11-01T00:00:00.12345678Z",
        "created_since=11/01/2026",
        "account_id=not-a-guid",
    ] {
        let got = get(&sim, tok, &format!("/api/v2/matters?{q}")).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(got.json(), invalid, "{q}");
    }
    let got = get(&sim, tok, "/api/v2/tasks?due_date_from=tomorrow").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    for q in [
        "updated_since=2026-11-01T00:00:00%2B00:00",
        "updated_since=2026-11-01T00:00:00Z",
        "updated_since=2026-11-01T00:00:00",
        "updated_since=2026-11-01T00:00:00.1234567",
        "updated_since=2026-10-31T17:00:00-07:00",
        "updated_since=",
    ] {
        assert_eq!(
            get(&sim, tok, &format!("/api/v2/matters?{q}")).await.status,
            StatusCode::OK,
            "{q}"
        );
    }
}

#[tokio::test]
async fn date_header_comes_from_the_sim_clock() {
    let sim = spawn(quiet()).await;
    let tok = &access(&sim).await;
    let date = |g: &Got| {
        chrono::DateTime::parse_from_rfc2822(g.headers["date"].to_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let got = get(&sim, tok, "/api/v2/items").await;
    let d = date(&got);
    assert!(
        (d - sim.now()).num_seconds().abs() <= 2,
        "{d} vs {}",
        sim.now()
    );
    assert_eq!(d.format("%Y-%m-%d").to_string(), "2026-11-02");
    sim.advance(std::time::Duration::from_secs(3 * 86_400));
    let d = date(&get(&sim, tok, "/api/v2/items").await);
    assert_eq!(d.format("%Y-%m-%d").to_string(), "2026-11-05");
    // Errors carry it too.
    let got = get(&sim, "bad", "/api/v2/items").await;
    assert!(got.headers.contains_key("date"));
}
