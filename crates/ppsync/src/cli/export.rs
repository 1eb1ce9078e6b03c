//! `ppsync export`: a resource's stored records as JSON lines or CSV (cells a spreadsheet would
//! run neutralised).

use std::io::Write;

use anyhow::Context as _;

use super::{ExportArgs, Format};
use crate::app;
use crate::config::Config;
use crate::resource;
use crate::store::Store;

pub(super) async fn export(cfg: Config, args: ExportArgs) -> anyhow::Result<i32> {
    let res = resource::find(&args.resource)
        .ok_or_else(|| anyhow::anyhow!(resource::unknown(&args.resource)))?;
    let (_, store) = app::open_existing(&cfg).await?;
    let store: Store = store;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| {
            format!(
                "cannot write the export to {}: choose a writable --output path",
                p.display()
            )
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    match args.format {
        Format::Jsonl => {
            store
                .export(res, args.include_deleted, |r| match &r.deleted_at {
                    Some(at) => {
                        let mut v: serde_json::Value =
                            serde_json::from_str(&r.data).map_err(std::io::Error::other)?;
                        if let Some(m) = v.as_object_mut() {
                            m.insert(
                                "_ppsync_deleted_at".into(),
                                serde_json::Value::String(at.clone()),
                            );
                        }
                        writeln!(out, "{v}")
                    }
                    None => writeln!(out, "{}", r.data),
                })
                .await?;
        }
        Format::Csv => {
            // Every cell quoted (OWASP's advice: a spreadsheet that splits on `;` or tabs
            // cannot start a new cell inside one), and each neutralised (`csv_cell`).
            let mut w = csv::WriterBuilder::new()
                .quote_style(csv::QuoteStyle::Always)
                .from_writer(&mut out);
            let mut header = vec!["id", "created_at", "updated_at", "deleted_at"];
            header.extend(res.columns.iter().map(|c| c.name));
            header.push("data");
            w.write_record(&header).map_err(csv_io)?;
            store
                .export(res, args.include_deleted, |r| {
                    let mut rec = vec![
                        r.id,
                        r.created_at.unwrap_or_default(),
                        r.updated_at.unwrap_or_default(),
                        r.deleted_at.unwrap_or_default(),
                    ];
                    rec.extend(r.columns.iter().map(|c| c.clone().unwrap_or_default()));
                    rec.push(r.data);
                    for cell in &rec {
                        w.write_field(csv_cell(cell).as_bytes()).map_err(csv_io)?;
                    }
                    w.write_record(None::<&[u8]>).map_err(csv_io)
                })
                .await?;
            w.flush()?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// A cell a spreadsheet would run as a formula (OWASP, CSV injection: one starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'`, which makes it text; a plain number
/// (`-12.5`, `+3`, `-1e5`) is left as it is, since it runs nothing.
fn csv_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') if !plain_number(cell) => {
            format!("'{cell}").into()
        }
        _ => cell.into(),
    }
}

/// An optional sign, digits with at most one decimal point, and an optional exponent: what the
/// store writes for its numeric columns. Not `f64::from_str`, which takes `inf` and `NaN`.
fn plain_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() || !frac.is_empty())
        && digits(int)
        && digits(frac)
        && exponent.is_none_or(|e| !e.is_empty() && digits(e))
}

/// A CSV error as the I/O error it wraps, if it is one (a closed pipe must stay recognisable).
fn csv_io(e: csv::Error) -> std::io::Error {
    if !e.is_io_error() {
        return std::io::Error::other(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_numbers_kept() {
        for (cell, want) in [
            ("=1+1", "'=1+1"),
            (
                "=HYPERLINK(\"http://evil.example\")",
                "'=HYPERLINK(\"http://evil.example\")",
            ),
            ("+1 (555) 010-0199", "'+1 (555) 010-0199"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-", "'-"),
            ("--1", "'--1"),
            ("-1-1", "'-1-1"),
            ("-1e", "'-1e"),
            ("-.", "'-."),
            ("-1.2.3", "'-1.2.3"),
            ("-inf", "'-inf"),
            ("-NaN", "'-NaN"),
            ("+Infinity", "'+Infinity"),
            ("-0x10", "'-0x10"),
            ("-12.5", "-12.5"),
            ("-12", "-12"),
            ("+3", "+3"),
            ("-1e5", "-1e5"),
            ("-2.5E-3", "-2.5E-3"),
            ("-.5", "-.5"),
            ("12", "12"),
            ("a=b", "a=b"),
            (" =1", " =1"),
            ("{\"a\":\"=1\"}", "{\"a\":\"=1\"}"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(cell), want, "{cell:?}");
        }
    }
}
