//! The e-mail sink: each notification (or a digest of them, `digest.rs`) as a plain-text message
//! sent over SMTP with `lettre`. Delivered means the server answered 250 to the message's DATA.
//!
//! The message: a subject a person can read, a body of readable lines followed by the JSON
//! payload, a `Message-ID` derived from the notification's stable id (a redelivery carries the
//! same one, so a mail client or a filter can spot it) and the id itself in `X-PPSync-Id`.

use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use super::one_line;

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Tls,
    /// `smtp://` to another machine: STARTTLS required before anything is sent (port 587 by
    /// default); a server that does not offer it gets neither the password nor the message.
    StartTls,
    /// `smtp://` to a loopback address (a local relay): plain, since the traffic never leaves
    /// the machine and local relays commonly offer STARTTLS with a certificate no one can verify.
    Loopback,
}

/// The `[notify]` e-mail settings, checked (`config/email.rs`).
#[derive(Clone, Debug)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<secrecy::SecretString>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// `Some(every)`: one message per `every` listing what came due meanwhile, instead of one
    /// per notification.
    pub digest: Option<Duration>,
}

/// Each SMTP command's answer is awaited this long; a whole send at most [`SEND_TIMEOUT`].
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// The SMTP client of one dispatcher.
pub struct Mailer {
    pub(super) cfg: EmailConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Mailer {
    pub fn new(cfg: EmailConfig) -> anyhow::Result<Mailer> {
        use secrecy::ExposeSecret;
        let tls = || TlsParameters::new(cfg.host.clone());
        let tls = match cfg.security {
            SmtpSecurity::Tls => Tls::Wrapper(tls()?),
            SmtpSecurity::StartTls => Tls::Required(tls()?),
            SmtpSecurity::Loopback => Tls::None,
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(COMMAND_TIMEOUT));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            b = b.credentials(Credentials::new(
                user.clone(),
                pass.expose_secret().to_string(),
            ));
        }
        let transport = b.build();
        Ok(Mailer { cfg, transport })
    }

    /// Sends one message; `Ok` once the server accepted it (250 after DATA).
    pub(super) async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        let mut b = Message::builder()
            .from(self.cfg.from.clone())
            .subject(mail.subject)
            .message_id(Some(mail.message_id))
            .header(PpsyncId(mail.ppsync_id))
            .header(ContentType::TEXT_PLAIN)
            // The wall clock, like the webhook's timestamp: a mail client compares it with its own.
            .date(SystemTime::now());
        for to in &self.cfg.to {
            b = b.to(to.clone());
        }
        let message = b.body(mail.body)?;
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            // lettre's errors carry the server's answer, never the credentials.
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "SMTP {}:{}: {}",
                self.cfg.host,
                self.cfg.port,
                one_line(&e.to_string(), 300)
            )),
            Err(_) => Err(anyhow::anyhow!(
                "SMTP {}:{}: no answer within {}s",
                self.cfg.host,
                self.cfg.port,
                SEND_TIMEOUT.as_secs()
            )),
        }
    }

    /// The message for one notification.
    pub(super) fn single(&self, id: &str, payload: &str) -> Mail {
        let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        let mut body = String::new();
        body.push_str(&summary(&v, id));
        body.push('\n');
        body.push_str(&details(&v, id));
        body.push('\n');
        body.push_str(&pretty(&v, payload));
        Mail {
            subject: format!("{}{}", firm_prefix(&v), summary(&v, id)),
            message_id: self.message_id(id),
            ppsync_id: id.to_string(),
            body,
        }
    }

    /// `<{id, encoded}@{the sender's domain}>`: the same notification always gets the same one.
    pub(super) fn message_id(&self, id: &str) -> String {
        let domain = self.cfg.from.email.domain();
        format!("<{}@{domain}>", encode_id(id))
    }
}

/// A message ready to send.
pub(super) struct Mail {
    pub subject: String,
    pub message_id: String,
    pub ppsync_id: String,
    pub body: String,
}

/// The readable line for a notification: the payload's own `summary` when it has one, else one
/// built from its kind, due time and subject.
pub(super) fn summary(v: &Value, id: &str) -> String {
    if let Some(s) = v.get("summary").and_then(Value::as_str) {
        return one_line(s, 200);
    }
    let subject = v
        .get("subject")
        .and_then(Value::as_str)
        .map(|s| one_line(s, 150))
        .unwrap_or_else(|| "(no subject)".into());
    let due = v.get("due").and_then(Value::as_str).map(readable_time);
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    match (kind, due) {
        ("task.created", _) => format!("New task: {subject}"),
        ("task.due", Some(due)) => format!("Task due {due}: {subject}"),
        ("event.upcoming", Some(at)) => format!("Event {at}: {subject}"),
        ("", _) => format!("Notification {id}"),
        (kind, Some(due)) => format!("{kind} {due}: {subject}"),
        (kind, None) => format!("{kind}: {subject}"),
    }
}

/// The lines under the summary: the firm, the records it concerns, its id.
pub(super) fn details(v: &Value, id: &str) -> String {
    let mut out = String::new();
    for (label, key) in [
        ("Firm", "firm"),
        ("Matter", "matter_id"),
        ("Account", "account_id"),
        ("Record", "record_id"),
    ] {
        if let Some(s) = v.get(key).and_then(Value::as_str) {
            out.push_str(&format!("{label}: {}\n", one_line(s, 200)));
        }
    }
    out.push_str(&format!("Id: {id}\n"));
    out
}

/// The payload, indented for reading (as received when it is not JSON).
pub(super) fn pretty(v: &Value, raw: &str) -> String {
    match v {
        Value::Null => raw.to_string(),
        v => serde_json::to_string_pretty(v).unwrap_or_else(|_| raw.to_string()),
    }
}

pub(super) fn firm_prefix(v: &Value) -> String {
    match v.get("firm").and_then(Value::as_str) {
        Some(f) => format!("[{}] ", one_line(f, 60)),
        None => String::new(),
    }
}

/// An instant as the payload writes it (RFC 3339, UTC), readable: `Fri 12 Dec 2025 17:00 UTC`.
fn readable_time(s: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%a %-d %b %Y %H:%M UTC")
            .to_string(),
        Err(_) => one_line(s, 60),
    }
}

/// A notification id as the left part of a Message-ID (RFC 5322 `dot-atom-text`): letters,
/// digits, `-` and `_` kept, any other byte written `=XX`, so distinct ids stay distinct.
pub(super) fn encode_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The `X-PPSync-Id` header: the notification's stable id (a digest's own id for a digest).
#[derive(Clone)]
struct PpsyncId(String);

impl Header for PpsyncId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-PPSync-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(PpsyncId(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_encode_to_distinct_message_id_parts() {
        assert_eq!(
            encode_id("task.due:abc-1:2025-12-12T17:00:00Z"),
            "task=2Edue=3Aabc-1=3A2025-12-12T17=3A00=3A00Z"
        );
        assert_ne!(encode_id("a.b"), encode_id("a=2Eb"));
    }

    #[test]
    fn subjects_read_like_sentences() {
        let due =
            json!({"kind": "task.due", "subject": "File 8824", "due": "2025-12-12T17:00:00Z"});
        assert_eq!(
            summary(&due, "x"),
            "Task due Fri 12 Dec 2025 17:00 UTC: File 8824"
        );
        let new = json!({"kind": "task.created", "subject": "Call\nclient"});
        assert_eq!(summary(&new, "x"), "New task: Call client");
        let own = json!({"kind": "task.due", "summary": "45 Day Deadline in 7 days"});
        assert_eq!(summary(&own, "x"), "45 Day Deadline in 7 days");
        assert_eq!(summary(&Value::Null, "x"), "Notification x");
    }
}
