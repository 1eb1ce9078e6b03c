//! The e-mail sink against a real SMTP server (Python's aiosmtpd, from the venv scripts/test.sh
//! makes): one message per notification, each once, readable subjects, Message-IDs derived from
//! the stable ids, the password used for AUTH and found in no message; and the digest: one
//! message per interval, its rows delivered only when the server accepted it.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use chrono::{DateTime, Duration, Timelike, Utc};
use ppsync::notify::Dispatcher;
use ppsync::store::{Notification, Store};
use serde_json::{Value, json};

use crate::support::*;

const USER: &str = "ppsync-mailer";
const PASSWORD: &str = "smtp-pa55-never-shown";

/// An SMTP server that requires AUTH (plain text is fine on loopback), answers 451 to DATA while
/// `<dir>/refuse` exists, and writes each accepted message to `<dir>/NNNN.json` as Python's own
/// e-mail parser reads it (before answering 250). Prints its port.
const SERVER: &str = r#"
import asyncio, email, email.policy, json, os, sys
from aiosmtpd.smtp import SMTP, AuthResult

d = sys.argv[1]
user, password = sys.argv[2].encode(), sys.argv[3].encode()

class Handler:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        if os.path.exists(os.path.join(d, "refuse")):
            return "451 4.3.0 try again later"
        Handler.n += 1
        m = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        out = {
            "subject": str(m["Subject"]), "message_id": str(m["Message-ID"]),
            "ppsync_id": str(m["X-PPSync-Id"]), "from": str(m["From"]), "to": str(m["To"]),
            "date": str(m["Date"]), "content_type": m.get_content_type(),
            "body": m.get_content().replace("\r\n", "\n"), "raw": envelope.original_content.decode("utf-8", "replace"),
            "authenticated": bool(session.authenticated),
            "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
        }
        path = os.path.join(d, "%04d.json" % Handler.n)
        with open(path + ".tmp", "w") as f:
            json.dump(out, f)
        os.rename(path + ".tmp", path)
        return "250 OK"

def auth(server, session, envelope, mechanism, data):
    return AuthResult(success=(data.login == user and data.password == password))

async def main():
    handler = Handler()
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: SMTP(handler, authenticator=auth, auth_required=True, auth_require_tls=False),
        "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()

asyncio.run(main())
"#;

struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        let python = std::env::var("PPSYNC_TEST_PYTHON").unwrap_or_else(|_| {
            panic!("PPSYNC_TEST_PYTHON is not set: run ./scripts/test.sh, which makes a Python venv with aiosmtpd (target/py) for the e-mail tests")
        });
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER).unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&inbox)
            .args([USER, PASSWORD])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python}: {e}: run ./scripts/test.sh to make the venv"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the SMTP server did not start (is aiosmtpd installed in {python}?): {line:?}")
        });
        SmtpServer { child, port, dir }
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    /// The messages accepted so far, in order.
    fn received(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.inbox())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    fn refuse(&self, on: bool) {
        let p = self.inbox().join("refuse");
        if on {
            std::fs::write(p, "").unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "[notify]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nsmtp_username = {USER:?}\nsmtp_password = {PASSWORD:?}\nemail_from = \"PPSync <ppsync@firm.example>\"\nemail_to = [\"ops@firm.example\", \"Bo Lee <bo@firm.example>\"]\n{extra}\n[http]\nlisten = \"off\"\n",
            self.port
        )
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Message-ID's left part as the sink promises it (written from its doc, not its code):
/// letters, digits, `-` and `_` kept, any other byte `=XX`.
fn expected_message_id(id: &str) -> String {
    let left: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            }
        })
        .collect();
    format!("<{left}@firm.example>")
}

fn dispatcher(app: &TestApp) -> Dispatcher {
    Dispatcher::new(
        ppsync::config::Config::load(Some(&app.config_path))
            .unwrap()
            .notify,
    )
    .unwrap()
}

/// (id, payload) of the outbox rows with `status`.
async fn outbox(store: &Store, status: &str) -> Vec<(String, Value)> {
    let ids = strings(
        store,
        &format!("SELECT id FROM outbox WHERE status = '{status}' ORDER BY id"),
    )
    .await;
    let payloads = strings(
        store,
        &format!("SELECT payload FROM outbox WHERE status = '{status}' ORDER BY id"),
    )
    .await;
    ids.into_iter()
        .zip(payloads.iter().map(|p| serde_json::from_str(p).unwrap()))
        .collect()
}

fn assert_no_secret(messages: &[Value]) {
    for m in messages {
        let raw = m["raw"].as_str().unwrap();
        assert!(!raw.contains(PASSWORD), "the password is in a message");
        assert!(!raw.contains(USER), "the SMTP user is in a message");
        assert_eq!(m["authenticated"], true, "sent without AUTH");
        assert_eq!(m["mail_from"], "ppsync@firm.example");
        assert_eq!(
            m["rcpt_tos"],
            json!(["ops@firm.example", "bo@firm.example"])
        );
        assert_eq!(m["content_type"], "text/plain");
    }
}

#[tokio::test]
async fn each_new_task_and_deadline_is_one_email_received_once() {
    let smtp = SmtpServer::start();
    let app = app(0.005, &smtp.config("")).await;
    let store = &app.engine.store;
    // The first backfill's findings are suppressed; what the firm does next is news.
    assert_clean(&app.pass().await);
    app.advance(std::time::Duration::from_secs(3600));
    assert_clean(&app.pass().await);
    let pending = outbox(store, "pending").await;
    assert!(!pending.is_empty(), "an hour of the firm's work notifies");

    // While the server refuses every message (451 to DATA) nothing is marked delivered, and the
    // dispatcher takes it for a sink that is down: three tries, none counted against a row.
    smtp.refuse(true);
    let r = dispatcher(&app)
        .deliver_due(store, Utc::now())
        .await
        .unwrap();
    assert_eq!((r.delivered, r.failed, r.sink_down), (0, 3, true), "{r:?}");
    assert!(smtp.received().is_empty());
    assert_eq!(outbox(store, "pending").await.len(), pending.len());
    assert_eq!(
        count(
            store,
            "SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM outbox"
        )
        .await,
        0
    );
    smtp.refuse(false);
    // The rows the down sink put off are due again later; a fresh dispatcher (a restart) sends
    // everything then.
    let later = Utc::now() + Duration::minutes(5);

    let r = dispatcher(&app).deliver_due(store, later).await.unwrap();
    assert_eq!(
        r.delivered as usize,
        pending.len(),
        "{r:?} {:?}",
        strings(
            store,
            "SELECT last_error FROM outbox WHERE last_error IS NOT NULL"
        )
        .await
    );
    let got = smtp.received();
    assert_eq!(got.len(), pending.len(), "one message per notification");
    let ids: BTreeSet<&str> = got
        .iter()
        .map(|m| m["ppsync_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), got.len(), "each notification once");
    assert_eq!(
        ids,
        pending.iter().map(|(id, _)| id.as_str()).collect(),
        "the ids sent are the pending ones"
    );
    for (id, payload) in &pending {
        let m = got.iter().find(|m| m["ppsync_id"] == id.as_str()).unwrap();
        assert_eq!(m["message_id"], expected_message_id(id));
        let subject = payload["subject"].as_str().unwrap_or("(no subject)");
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let s = m["subject"].as_str().unwrap();
        match payload["kind"].as_str().unwrap() {
            "task.created" => {
                assert!(s.starts_with(&format!("New task: {subject}")), "{s}");
                assert_eq!(Some(s), payload["summary"].as_str());
            }
            // A deadline's payload carries its own readable line ("Task in 7 days: ...").
            "deadline" => {
                let summary = payload["summary"].as_str().expect("a deadline's summary");
                let summary = summary.split_whitespace().collect::<Vec<_>>().join(" ");
                assert_eq!(s, summary);
            }
            k => panic!("unexpected kind {k}"),
        }
        let body = m["body"].as_str().unwrap();
        assert!(
            body.starts_with(s),
            "the body opens with the summary: {body}"
        );
        assert!(body.contains(&format!("Id: {id}\n")), "{body}");
        // The payload follows the readable lines, whole.
        let json_at = body.find("\n{").expect("the payload in the body");
        let sent: Value = serde_json::from_str(body[json_at..].trim()).unwrap();
        assert_eq!(&sent, payload);
        assert_eq!(m["from"], "PPSync <ppsync@firm.example>");
    }
    assert_no_secret(&got);
    assert_eq!(outbox(store, "pending").await.len(), 0);
    assert_eq!(outbox(store, "delivered").await.len(), pending.len());

    // Delivered is delivered: a second round sends nothing.
    let r = dispatcher(&app).deliver_due(store, later).await.unwrap();
    assert_eq!(r.delivered, 0);
    assert_eq!(smtp.received().len(), pending.len());
}

fn task_created(id: &str, subject: &str) -> Notification {
    let id = format!("task.created:{id}");
    Notification {
        id: id.clone(),
        kind: "task.created".into(),
        resource: "tasks".into(),
        record_id: id.clone(),
        payload: json!({"id": id, "kind": "task.created", "resource": "tasks", "record_id": id, "subject": subject}),
        suppressed: false,
    }
}

#[tokio::test]
async fn a_digest_is_one_email_per_interval_and_its_rows_wait_until_it_is_accepted() {
    let smtp = SmtpServer::start();
    let app = app(0.005, &smtp.config("email_digest = \"1h\"")).await;
    let store = &app.engine.store;
    // Half past an hour: the next digest goes at the next full hour.
    let now = Utc::now();
    let t0: DateTime<Utc> = now
        .with_minute(30)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let items = [
        task_created("a1", "Identify replacement property"),
        task_created("b2", "Send 45-day letter"),
        task_created("c3", "Wire funds to QI"),
    ];
    let mut tx = store.begin().await.unwrap();
    tx.enqueue(&items, t0).await.unwrap();
    tx.commit().await.unwrap();
    let d = dispatcher(&app);

    // Due, but the hour is not over: nothing yet.
    let r = d.deliver_due(store, t0).await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 0));
    assert!(smtp.received().is_empty());

    // At the hour the server refuses the digest: no row is marked delivered.
    smtp.refuse(true);
    let hour = t0 + Duration::minutes(30);
    let r = d.deliver_due(store, hour).await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 3), "{r:?}");
    assert!(smtp.received().is_empty());
    assert_eq!(outbox(store, "pending").await.len(), 3);
    assert_eq!(
        count(
            store,
            "SELECT CAST(SUM(attempts) AS BIGINT) FROM outbox WHERE last_error LIKE '%451%'"
        )
        .await,
        3,
        "each row charged one try, with the server's answer"
    );

    // The server is back; the rows' retry falls after this hour's digest, so they go in the next.
    smtp.refuse(false);
    let r = d.deliver_due(store, hour).await.unwrap();
    assert_eq!(r.delivered, 0);
    let next = hour + Duration::hours(1);
    let r = d.deliver_due(store, next).await.unwrap();
    assert_eq!(r.delivered, 3, "{r:?}");
    let got = smtp.received();
    assert_eq!(got.len(), 1, "one message for the three");
    let m = &got[0];
    assert_eq!(
        m["subject"],
        "3 notifications: New task: Identify replacement property and 2 more"
    );
    assert!(
        m["message_id"].as_str().unwrap().starts_with("<digest-")
            && m["message_id"]
                .as_str()
                .unwrap()
                .ends_with("@firm.example>"),
        "{}",
        m["message_id"]
    );
    let body = m["body"].as_str().unwrap();
    for (i, subject) in [
        "Identify replacement property",
        "Send 45-day letter",
        "Wire funds to QI",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            body.contains(&format!("- New task: {subject}\n")),
            "{i}: {body}"
        );
    }
    for n in &items {
        assert!(body.contains(&format!("Id: {}\n", n.id)), "{body}");
    }
    assert_no_secret(&got);
    assert_eq!(outbox(store, "delivered").await.len(), 3);

    // The same hour again: nothing more.
    let r = d.deliver_due(store, next).await.unwrap();
    assert_eq!(r.delivered, 0);
    assert_eq!(smtp.received().len(), 1);
}
