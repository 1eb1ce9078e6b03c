//! The webhook sink: a JSON POST signed the Standard Webhooks way (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`).

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Dispatcher;

type HmacSha256 = Hmac<Sha256>;

/// The key a webhook secret stands for: a Standard Webhooks secret (`whsec_<base64>`) is its
/// decoded bytes, as the spec says; any other secret is used as its bytes (secrets set before
/// ppsync followed the spec keep working). The error never repeats the secret.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                "`notify.webhook_secret` starts with whsec_ but what follows is not base64: paste the secret exactly as the receiver gave it".to_string()
            }),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// The `webhook-signature` value (Standard Webhooks, symmetric): `v1,` and the base64 of
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`. The timestamp is signed, so a captured request
/// cannot be passed off as a fresh one.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

impl Dispatcher {
    /// POSTs `payload` to the webhook; a 2xx answer means delivered.
    pub(super) async fn post_webhook(
        &self,
        url: &url::Url,
        id: &str,
        payload: &str,
    ) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        // Receivers check the timestamp against their own clock: the wall clock's, even when
        // the scheduler runs on a simulated one.
        let timestamp = Utc::now().timestamp();
        let mut req = self
            .http
            .post(url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("x-ppsync-id", id);
        if let Some(firm) = &self.cfg.firm {
            req = req.header("x-ppsync-firm", firm);
        }
        if let Some(key) = &self.key {
            req = req.header(
                "webhook-signature",
                sign(key.expose_secret(), id, timestamp, payload.as_bytes()),
            );
        }
        // Without the URL: a webhook URL often carries a token of its own.
        let resp = req
            .body(payload.to_string())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("webhook: {}", e.without_url()))?;
        anyhow::ensure!(
            resp.status().is_success(),
            "webhook answered {}",
            resp.status()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector() {
        // From the Standard Webhooks reference library (standard-webhooks/standard-webhooks,
        // libraries/rust/src/lib.rs, `test_sign`).
        let key = signing_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_other_than_whsec_are_their_bytes_and_a_bad_whsec_is_refused_without_echo() {
        assert_eq!(signing_key("test-secret").unwrap(), b"test-secret");
        // The same bytes either way give the same signature.
        let raw = sign(b"0123456789abcdef01234567", "x", 1, b"{}");
        let encoded = sign(
            &signing_key("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3").unwrap(),
            "x",
            1,
            b"{}",
        );
        assert_eq!(raw, encoded);
        for bad in ["whsec_not base64!", "whsec_"] {
            let e = signing_key(bad).unwrap_err();
            assert!(!e.contains("not base64!") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_signature_covers_the_timestamp() {
        let key = b"k";
        assert_ne!(sign(key, "id", 1, b"{}"), sign(key, "id", 2, b"{}"));
        assert_ne!(sign(key, "id", 1, b"{}"), sign(key, "id2", 1, b"{}"));
    }
}
