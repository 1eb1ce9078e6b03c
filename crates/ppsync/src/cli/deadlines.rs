//! `ppsync deadlines`: open tasks and events coming due, from the mirror.

use crate::app;
use crate::config::Config;

pub(super) async fn deadlines(cfg: Config, days: u32, json: bool) -> anyhow::Result<i32> {
    let (_, store) = app::open(&cfg).await?;
    let now = chrono::Utc::now();
    let list = store
        .deadlines(now, now + chrono::Duration::days(i64::from(days)))
        .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    if list.is_empty() {
        outln!("nothing open comes due in the next {days} days");
    }
    for d in &list {
        outln!(
            "{}  {:<5} {:<12} {:<50} {}",
            d.due.get(..16).unwrap_or(&d.due),
            d.kind,
            d.status.as_deref().unwrap_or(""),
            d.subject.as_deref().unwrap_or(""),
            d.matter.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}
