//! `ppsync notify retry`: dead notifications sent again.

use anyhow::bail;

use super::NotifyCommand;
use crate::app;
use crate::config::Config;

pub(super) async fn notify(cfg: Config, cmd: NotifyCommand) -> anyhow::Result<i32> {
    let (_, store) = app::open_existing(&cfg).await?;
    match cmd {
        NotifyCommand::Retry { ids, all } => {
            let n = if all && !ids.is_empty() {
                bail!("pass notification ids or --all, not both");
            } else if all {
                store.outbox_retry(None, chrono::Utc::now()).await?
            } else if ids.is_empty() {
                bail!(
                    "name the notifications to retry (`ppsync status` lists the dead ones by id), or pass --all"
                );
            } else {
                // Every id is checked before any is changed: a typo changes nothing.
                let known = store.outbox_status(&ids).await?;
                for id in &ids {
                    match known.get(id).map(String::as_str) {
                        None => bail!(
                            "no notification {id:?}: `ppsync status` lists the dead ones by id"
                        ),
                        Some("dead") => {}
                        Some(other) => bail!(
                            "notification {id:?} is {other}, not dead: only dead notifications are retried"
                        ),
                    }
                }
                store.outbox_retry(Some(&ids), chrono::Utc::now()).await?
            };
            if n == 0 {
                outln!("no dead notifications");
            } else {
                outln!(
                    "{n} notification{} back in the queue: `ppsync run` sends {} within a minute",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "it" } else { "them" }
                );
            }
            Ok(0)
        }
    }
}
