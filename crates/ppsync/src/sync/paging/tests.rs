//! Table tests of the paging decisions (the completeness rule, keyset and `$skip` steps, what
//! pages teach, queries, date windows).

use super::*;
use crate::resource::find;

fn t(s: &str) -> DateTime<Utc> {
    parse_api_time(s).unwrap()
}

fn at() -> DateTime<Utc> {
    t("2026-12-03T10:00:00Z")
}

fn page(n: u64, first: &str, last: &str) -> PageInfo {
    PageInfo {
        received: n,
        first_id: (n > 0).then(|| first.to_string()),
        last_id: (n > 0).then(|| last.to_string()),
        last_updated_at: (n > 0).then(|| t("2026-11-02T10:00:00")),
        first_updated_at: (n > 0).then(|| t("2026-11-01T10:00:00")),
        sorted_by_updated_at: true,
        ..PageInfo::default()
    }
}

fn dialect(largest: u64, top: Support, skip: Support) -> Dialect {
    let mut d = Dialect::default();
    if largest > 0 {
        d.saw_page(largest, at());
    }
    d.set(QueryOption::Top, top, "test", at());
    d.set(QueryOption::Skip, skip, "test", at());
    d
}

fn sent(top: Option<u64>, skip: u64, by_updated_at: bool) -> Sent {
    Sent {
        top,
        skip,
        by_updated_at,
        orderby: by_updated_at,
        since: None,
    }
}

fn kind(s: &Step) -> String {
    match s {
        Step::Restart => "restart".into(),
        Step::Done => "done".into(),
        Step::Next(l) if l.skip > 0 => format!("next skip={}", l.skip),
        Step::Next(_) => "next keyset".into(),
        Step::Stuck(why) => format!("stuck: {why}"),
    }
}

#[test]
fn the_completeness_rule() {
    use Support::*;
    let matters = find("matters").unwrap();
    let contacts = find("contacts").unwrap();
    let messages = find("messages").unwrap();
    // Incremental listings end on a short page; complete ones settle it (below).
    let first = Listing::new(Mode::Incremental, None, 1);
    let mut full = Listing::new(Mode::Full, None, 1);
    let mut second = first.clone();
    second.skip = 30;
    second.anchor = Some("z".into());
    second.prev_first = Some("a".into());
    second.prev_len = 40;
    let mut found = page(40, "k", "z9");
    found.anchor_found = true;
    let mut settling = full.clone();
    settling.keyset = Some("2026-11-02T09:59:59.999000Z".into());
    settling.prev_last = Some("2026-11-02T10:00:00.000000Z".into());
    full.pages = 0;
    // (case, resource, listing, page, sent, dialect before the page, expected)
    let cases: Vec<(&str, &str, &Listing, PageInfo, Sent, Dialect, &str)> = vec![
        (
            "empty page",
            "matters",
            &first,
            page(0, "", ""),
            sent(Some(2500), 0, true),
            dialect(0, Unknown, Unknown),
            "done",
        ),
        (
            "first page ever, short of $top: the capacity is unknown, one more settles it",
            "matters",
            &first,
            page(37, "a", "z"),
            sent(Some(2500), 0, true),
            dialect(0, Unknown, Unknown),
            "next keyset",
        ),
        (
            "shorter than the largest response seen: proven",
            "matters",
            &first,
            page(36, "a", "z"),
            sent(Some(2500), 0, true),
            dialect(37, Unknown, Unknown),
            "done",
        ),
        (
            "as long as the largest response seen: may be cut",
            "matters",
            &first,
            page(37, "a", "z"),
            sent(Some(2500), 0, true),
            dialect(37, Unknown, Unknown),
            "next keyset",
        ),
        (
            "in updated_at order but also in creation order: the order is not proven",
            "matters",
            &first,
            PageInfo {
                sorted_by_created_at: true,
                ..page(2500, "a", "z")
            },
            sent(Some(2500), 0, true),
            dialect(2500, Honoured, Honoured),
            "next skip=2480",
        ),
        (
            "a small page of the same first record only: a shift, not an ignored $skip",
            "contacts",
            &second,
            page(40, "a", "y"),
            sent(Some(2500), 30, false),
            dialect(40, Unknown, Unknown),
            "restart",
        ),
        (
            "a full page of $top",
            "matters",
            &first,
            page(2500, "a", "z"),
            sent(Some(2500), 0, true),
            dialect(2500, Honoured, Honoured),
            "next keyset",
        ),
        (
            "shorter than $top once $top is proven",
            "matters",
            &first,
            page(2499, "a", "z"),
            sent(Some(2500), 0, true),
            dialect(2500, Honoured, Honoured),
            "done",
        ),
        (
            "$top ignored, everything sent at once: one more settles it",
            "contacts",
            &first,
            page(3000, "a", "z"),
            sent(Some(2500), 0, false),
            dialect(0, Unknown, Unknown),
            "next skip=2980",
        ),
        (
            "$top ignored, shorter than the largest response",
            "contacts",
            &first,
            page(2999, "a", "z"),
            sent(Some(2500), 0, false),
            dialect(3000, Ignored, Unknown),
            "done",
        ),
        (
            "the anchor missing: records shifted",
            "contacts",
            &second,
            page(40, "k", "z9"),
            sent(Some(40), 30, false),
            dialect(40, Honoured, Honoured),
            "restart",
        ),
        (
            "the anchor found, a full page: go on, overlapping by a quarter",
            "contacts",
            &second,
            found.clone(),
            sent(Some(40), 30, false),
            dialect(40, Honoured, Honoured),
            "next skip=60",
        ),
        (
            "the first page again: $skip is ignored",
            "contacts",
            &second,
            page(40, "a", "z"),
            sent(Some(2500), 30, false),
            dialect(40, Unknown, Unknown),
            "stuck: the endpoint ignores $skip (asked $skip=30, got its first page again)",
        ),
        (
            "$skip known ignored: no request wasted",
            "contacts",
            &first,
            page(40, "a", "z"),
            sent(Some(2500), 0, false),
            dialect(40, Unknown, Ignored),
            "stuck: the endpoint ignores $skip",
        ),
        (
            "paging rejected: the whole list or a cut, unprovable",
            "messages",
            &first,
            page(30, "a", "z"),
            sent(None, 0, false),
            dialect(30, Rejected, Rejected),
            "stuck: the endpoint rejects $skip",
        ),
        (
            "$top rejected, $skip honoured: pages by $skip alone",
            "contacts",
            &first,
            page(30, "a", "z"),
            sent(None, 0, false),
            dialect(30, Rejected, Honoured),
            "next skip=23",
        ),
        (
            "a no-parameter list shorter than it has been: proven (no way to ask for more)",
            "messages",
            &full,
            page(29, "a", "z"),
            sent(Some(2500), 0, false),
            dialect(30, Ignored, Ignored),
            "done",
        ),
        (
            "a complete listing's short last page is settled by one more request",
            "matters",
            &full,
            page(36, "a", "z"),
            sent(Some(2500), 0, true),
            dialect(2500, Honoured, Honoured),
            "next keyset",
        ),
        (
            "the settling page brought nothing the page before did not hold: done",
            "matters",
            &settling,
            page(1, "z", "z"),
            sent(Some(2500), 0, true),
            dialect(2500, Honoured, Honoured),
            "done",
        ),
        (
            "the settling page brought records the page before did not: a cap, go on",
            "matters",
            &settling,
            PageInfo {
                beyond_prev: 12,
                last_updated_at: Some(t("2026-11-02T11:00:00")),
                ..page(40, "m", "x")
            },
            sent(Some(2500), 0, true),
            dialect(2500, Honoured, Honoured),
            "next keyset",
        ),
    ];
    for (case, res, l, p, s, d, want) in cases {
        let res = match res {
            "matters" => matters,
            "contacts" => contacts,
            _ => messages,
        };
        assert_eq!(kind(&step(res, l, &p, &s, &d)), want, "{case}");
    }
}

#[test]
fn keyset_falls_back_to_skip_when_order_or_filter_fail() {
    let matters = find("matters").unwrap();
    let l = Listing::new(Mode::Backfill, None, 1);
    let d = dialect(40, Support::Honoured, Support::Honoured);
    let mut p = page(40, "a", "z");
    p.sorted_by_updated_at = false;
    assert_eq!(
        kind(&step(matters, &l, &p, &sent(Some(40), 0, true), &d)),
        "next skip=30",
        "records out of order: the order is ignored"
    );
    let mut d2 = d.clone();
    d2.set_since(Since::Ignored, "test", at());
    assert_eq!(
        kind(&step(
            matters,
            &l,
            &page(40, "a", "z"),
            &sent(Some(40), 0, true),
            &d2
        )),
        "next skip=30",
        "updated_since ignored: keyset cannot narrow"
    );
    // A page full of one timestamp: no progress by keyset.
    let mut tie = l.clone();
    tie.keyset = Some(canonical(
        t("2026-11-02T10:00:00") - chrono::Duration::milliseconds(1),
    ));
    assert_eq!(
        kind(&step(
            matters,
            &tie,
            &page(40, "a", "z"),
            &sent(Some(40), 0, true),
            &d
        )),
        "next skip=30"
    );
}

#[test]
fn learning_from_pages() {
    let mut d = Dialect::default();
    let l = Listing::new(Mode::Backfill, None, 1);
    // $top ignored: more records than asked.
    assert!(learn(
        &mut d,
        &l,
        &page(60, "a", "z"),
        &sent(Some(50), 0, true),
        at()
    ));
    assert_eq!(d.top(), Support::Ignored);
    assert_eq!(d.largest(), 60);
    // A short page (7 of 50) followed by a page holding older records beyond it: the cap is 7.
    let mut d = Dialect::default();
    let mut next = l.clone();
    next.prev_len = 7;
    next.prev_top = Some(50);
    next.prev_last = Some("2026-11-01T00:00:00.000000Z".into());
    next.keyset = next.prev_last.clone();
    let mut p = page(7, "h", "n");
    p.beyond_prev = 6;
    learn(&mut d, &next, &p, &sent(Some(50), 0, true), at());
    assert_eq!(d.cap(), Some(7));
    assert_eq!(page_size(2500, &d), 7);
    // ... but a following page holding only the boundary's ties proves nothing.
    let mut d = Dialect::default();
    learn(
        &mut d,
        &next,
        &page(1, "g", "g"),
        &sent(Some(50), 0, true),
        at(),
    );
    assert_eq!(d.cap(), None);
    // $skip ignored.
    let mut d = Dialect::default();
    let mut again = l.clone();
    again.skip = 30;
    again.prev_first = Some("a".into());
    again.anchor = Some("z".into());
    again.prev_len = 50;
    learn(
        &mut d,
        &again,
        &page(50, "a", "z"),
        &sent(Some(2500), 30, false),
        at(),
    );
    assert_eq!(d.skip(), Support::Ignored);
    // Out of order: $orderby ignored; older than asked: updated_since ignored.
    let mut d = Dialect::default();
    let mut p = page(10, "a", "z");
    p.sorted_by_updated_at = false;
    p.older_than_since = 3;
    let mut s = sent(Some(50), 0, true);
    s.since = Some(t("2026-11-01T00:00:00"));
    learn(&mut d, &l, &p, &s, at());
    assert_eq!(d.orderby(), Support::Ignored);
    assert_eq!(d.since(), Since::Ignored);
    // Options dropped after a 400 are learned as rejected.
    let mut d = Dialect::default();
    let mut dropped = l.clone();
    dropped.omit_order = true;
    learn(
        &mut d,
        &dropped,
        &page(3, "a", "c"),
        &sent(Some(50), 0, false),
        at(),
    );
    assert_eq!(d.orderby(), Support::Rejected);
}

#[test]
fn the_query_follows_the_dialect() {
    let matters = find("matters").unwrap();
    let mut l = Listing::new(Mode::Incremental, Some(t("2026-11-02T00:00:00")), 1);
    let names = |q: &[(String, String)]| {
        q.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let d = Dialect::default();
    let (q, s) = query(matters, &l, &d, 2500);
    assert_eq!(
        names(&q),
        "updated_since=2026-11-02T00:00:00.000+00:00&$orderby=updated_at asc,id asc&$top=2500"
    );
    assert!(s.by_updated_at);
    let mut d = Dialect::default();
    d.proved_cap(300, "test", at());
    d.set(QueryOption::OrderBy, Support::Rejected, "test", at());
    l.skip = 280;
    let (q, s) = query(matters, &l, &d, 2500);
    assert_eq!(
        names(&q),
        "updated_since=2026-11-02T00:00:00.000+00:00&$top=300&$skip=280"
    );
    assert!(!s.by_updated_at);
    l.omit_top = true;
    l.omit_skip = true;
    let (q, _) = query(matters, &l, &d, 2500);
    assert_eq!(names(&q), "updated_since=2026-11-02T00:00:00.000+00:00");
    // A window of the date partition.
    let invoices = find("invoices").unwrap();
    let mut w = Listing::new(Mode::Full, None, 1);
    w.windows = vec![Window {
        from: Some("2026-01-01T20:00:00.000000Z".into()),
        to: None,
    }];
    let (q, _) = query(invoices, &w, &Dialect::default(), 2500);
    assert_eq!(
        names(&q),
        "date_from=2026-01-01T20:00:00.000+00:00&$orderby=updated_at asc,id asc&$top=2500"
    );
    // Messages: no order; a reverse page orders by the key.
    let messages = find("messages").unwrap();
    let mut m = Listing::new(Mode::Full, None, 1);
    assert_eq!(
        names(&query(messages, &m, &Dialect::default(), 2500).0),
        "$top=2500"
    );
    m.phase = Phase::Reverse;
    assert_eq!(
        names(&query(messages, &m, &Dialect::default(), 2500).0),
        "$orderby=id desc&$top=2500"
    );
}

#[test]
fn windows_split_at_the_median_date_and_cover_everything() {
    let l = Listing::new(Mode::Full, None, 1);
    let mut p = page(5, "a", "e");
    p.dates = [
        "2026-03-01",
        "2026-01-01",
        "2026-02-01",
        "2026-05-01",
        "2026-04-01",
    ]
    .iter()
    .map(|d| t(&format!("{d}T20:00:00")))
    .collect();
    let w = split(&l, &mut p).unwrap();
    assert_eq!(
        w,
        vec![
            Window {
                from: None,
                to: Some("2026-03-01T19:59:59.999000Z".into())
            },
            Window {
                from: Some("2026-03-01T19:59:59.000000Z".into()),
                to: Some("2026-03-01T20:00:01.000000Z".into())
            },
            Window {
                from: Some("2026-03-01T20:00:00.001000Z".into()),
                to: None
            },
        ]
    );
    let l2 = partitioned(&l, w);
    assert_eq!(l2.windows.len(), 3);
    let l3 = next_window(&l2).unwrap();
    assert_eq!(l3.windows.len(), 2);
    assert!(next_window(&partitioned(&l, vec![l2.windows[0].clone()])).is_none());
    // One instant holding more than a response: cannot split.
    let mut one = l.clone();
    one.windows = vec![l2.windows[1].clone()];
    let mut p = page(3, "a", "c");
    p.dates = vec![t("2026-03-01T20:00:00"); 3];
    assert!(
        split(&one, &mut p)
            .unwrap_err()
            .contains("within a second of 2026-03-01T20:00:00")
    );
    // Splitting a window always gives windows inside it (the middle one clipped).
    let mut inner = l.clone();
    inner.windows = vec![Window {
        from: Some("2026-03-01T20:00:00.000000Z".into()),
        to: Some("2026-03-05T20:00:00.000000Z".into()),
    }];
    let mut p = page(3, "a", "c");
    p.dates = ["2026-03-01", "2026-03-01", "2026-03-03"]
        .iter()
        .map(|d| t(&format!("{d}T20:00:00")))
        .collect();
    let w = split(&inner, &mut p).unwrap();
    assert_eq!(
        w[0].from.as_deref(),
        Some("2026-03-01T20:00:00.000000Z"),
        "{w:?}"
    );
    assert_eq!(w.len(), 2, "nothing before the window's start: {w:?}");
    // Records dated outside their window: the filters are not applied.
    let mut p = page(3, "a", "c");
    p.dates = vec![t("2026-06-01T20:00:00")];
    assert!(split(&inner, &mut p).unwrap_err().contains("not applied"));
    // A record without a date: the partition would miss it.
    let mut p = page(3, "a", "c");
    p.null_dates = 1;
    assert!(split(&l, &mut p).unwrap_err().contains("no business date"));
}

#[test]
fn when_a_page_may_be_cut() {
    use Support::*;
    let plain = Listing::new(Mode::Full, None, 1);
    let suspect = Listing {
        suspect_cap: Some(30),
        ..plain.clone()
    };
    // (case, listing, records, $top sent, dialect before the page, may be cut)
    type Case<'a> = (&'a str, &'a Listing, u64, Option<u64>, Dialect, bool);
    let cases: Vec<Case> = vec![
        (
            "an empty page is never cut",
            &plain,
            0,
            Some(50),
            dialect(0, Unknown, Unknown),
            false,
        ),
        (
            "nothing known: any page may be",
            &plain,
            1,
            Some(50),
            dialect(0, Unknown, Unknown),
            true,
        ),
        (
            "shorter than the largest response",
            &plain,
            39,
            None,
            dialect(40, Unknown, Unknown),
            false,
        ),
        (
            "as long as the largest response",
            &plain,
            40,
            None,
            dialect(40, Unknown, Unknown),
            true,
        ),
        (
            "$top smaller than the largest: a full $top",
            &plain,
            25,
            Some(25),
            dialect(40, Honoured, Unknown),
            true,
        ),
        (
            "$top smaller than the largest: short of it",
            &plain,
            24,
            Some(25),
            dialect(40, Honoured, Unknown),
            false,
        ),
        (
            "more than $top: $top is ignored, the largest rules",
            &plain,
            30,
            Some(25),
            dialect(40, Unknown, Unknown),
            false,
        ),
        (
            "$top known ignored: the largest rules",
            &plain,
            25,
            Some(25),
            dialect(40, Ignored, Unknown),
            false,
        ),
        (
            "a suspected cap lowers the floor",
            &suspect,
            30,
            None,
            dialect(40, Unknown, Unknown),
            true,
        ),
        (
            "short of a suspected cap",
            &suspect,
            29,
            None,
            dialect(40, Unknown, Unknown),
            false,
        ),
    ];
    for (case, l, n, top, d, want) in cases {
        let p = page(n, "a", "z");
        assert_eq!(maybe_cut(l, &p, &sent(top, 0, false), &d), want, "{case}");
    }
}

#[test]
fn when_skip_was_ignored_and_when_an_order_is_proven() {
    let mut before = Listing::new(Mode::Full, None, 1);
    before.prev_first = Some("a".into());
    before.anchor = Some("z".into());
    before.prev_len = 40;
    // (case, page, $skip sent, the same page again)
    let cases: Vec<(&str, PageInfo, u64, bool)> = vec![
        ("the very same page", page(40, "a", "z"), 30, true),
        ("no $skip sent", page(40, "a", "z"), 0, false),
        ("another first record", page(40, "b", "z"), 30, false),
        (
            "another last record (shifted by one)",
            page(40, "a", "y"),
            30,
            false,
        ),
        ("another length", page(39, "a", "z"), 30, false),
        ("empty", page(0, "", ""), 30, false),
    ];
    for (case, p, skip, want) in cases {
        assert_eq!(
            skip_repeated(&before, &p, &sent(Some(40), skip, false)),
            want,
            "{case}"
        );
    }
    let in_order = PageInfo {
        sorted_by_created_at: false,
        ..page(8, "a", "z")
    };
    // (case, page, proves the `updated_at` order)
    let cases: Vec<(&str, PageInfo, bool)> = vec![
        (
            "8 records by updated_at, not by creation",
            in_order.clone(),
            true,
        ),
        (
            "7 records are too few",
            PageInfo {
                received: 7,
                ..in_order.clone()
            },
            false,
        ),
        (
            "also in creation order",
            PageInfo {
                sorted_by_created_at: true,
                ..in_order.clone()
            },
            false,
        ),
        (
            "not by updated_at",
            PageInfo {
                sorted_by_updated_at: false,
                ..in_order.clone()
            },
            false,
        ),
        (
            "one timestamp throughout",
            PageInfo {
                first_updated_at: in_order.last_updated_at,
                ..in_order.clone()
            },
            false,
        ),
    ];
    for (case, p, want) in cases {
        assert_eq!(proves_order(&p), want, "{case}");
    }
}

#[test]
fn overlaps_page_sizes_and_signposts() {
    // (records in the page, records the next `$skip` page re-reads)
    for (n, want) in [
        (0, 0),
        (1, 0),
        (2, 1),
        (4, 1),
        (8, 2),
        (40, 10),
        (80, 20),
        (2500, 20),
    ] {
        assert_eq!(overlap(n), want, "overlap after {n}");
    }
    let unknown = Dialect::default();
    let mut capped = Dialect::default();
    capped.proved_cap(300, "test", at());
    // (case, configured, dialect, page size asked)
    let cases: Vec<(&str, u32, &Dialect, u64)> = vec![
        ("no cap known", 2500, &unknown, 2500),
        ("a proven cap below the configured size", 2500, &capped, 300),
        ("the configured size below the cap", 100, &capped, 100),
        ("zero configured asks for one", 0, &unknown, 1),
    ];
    for (case, configured, d, want) in cases {
        assert_eq!(page_size(configured, d), want, "{case}");
    }
    let now = at();
    let minutes = chrono::Duration::minutes;
    let tolerance = chrono::Duration::minutes(15);
    // (case, server's Date, signpost)
    let cases = [
        ("no Date header: our clock", None, now),
        (
            "behind our clock: the server's",
            Some(now - minutes(60)),
            now - minutes(60),
        ),
        (
            "ahead within the tolerance: the server's",
            Some(now + minutes(15)),
            now + minutes(15),
        ),
        (
            "ahead beyond the tolerance: our clock",
            Some(now + minutes(16)),
            now,
        ),
    ];
    for (case, date, want) in cases {
        assert_eq!(signpost_of(date, now, tolerance), want, "{case}");
    }
}

#[test]
fn windows_follow_one_another() {
    let w = |from: &str| Window {
        from: Some(from.to_string()),
        to: None,
    };
    let mut plain = Listing::new(Mode::Full, None, 1);
    plain.skip = 40;
    plain.keyset = Some("2026-11-01T00:00:00.000000Z".into());
    let one = Listing {
        windows: vec![w("a")],
        ..plain.clone()
    };
    let two = Listing {
        windows: vec![w("a"), w("b")],
        ..plain.clone()
    };
    // (case, listing, windows after `next_window`: None when the listing ends)
    let cases: Vec<(&str, &Listing, Option<Vec<Window>>)> = vec![
        ("not partitioned: the listing ends", &plain, None),
        ("the last window: the listing ends", &one, None),
        ("the next window", &two, Some(vec![w("b")])),
    ];
    for (case, l, want) in cases {
        let next = next_window(l);
        assert_eq!(next.as_ref().map(|n| n.windows.clone()), want, "{case}");
        if let Some(n) = next {
            assert_eq!(
                (n.skip, n.keyset),
                (0, None),
                "{case}: from the window's start"
            );
        }
    }
    // (case, listing, windows given, windows after `partitioned`)
    let cases: Vec<(&str, &Listing, Vec<Window>, Vec<Window>)> = vec![
        (
            "the partition begins",
            &plain,
            vec![w("x"), w("y")],
            vec![w("x"), w("y")],
        ),
        (
            "the current window is split",
            &two,
            vec![w("x"), w("y")],
            vec![w("x"), w("y"), w("b")],
        ),
    ];
    for (case, l, given, want) in cases {
        let n = partitioned(l, given);
        assert_eq!(n.windows, want, "{case}");
        assert_eq!(
            (n.skip, n.keyset),
            (0, None),
            "{case}: from the window's start"
        );
    }
}
