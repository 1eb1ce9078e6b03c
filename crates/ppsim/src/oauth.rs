//! OAuth 2.0 authorization-code flow as PracticePanther runs it (§1): opaque access tokens with
//! `expires_in` (default 86400 s), refresh tokens that are single-use and rotate, client
//! credentials in the form body, errors as `400 {"error": "..."}`.

use std::collections::HashMap;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::time::TICKS_PER_SEC;

/// Refresh tokens live 60 days ("valid for 60 days or until used").
const REFRESH_TTL: i64 = 60 * 86_400 * TICKS_PER_SEC;
/// Authorization codes live 10 minutes.
const CODE_TTL: i64 = 600 * TICKS_PER_SEC;

#[derive(Debug)]
pub struct Auth {
    rng: ChaCha8Rng,
    pub access_ttl: i64,
    /// access token → expiry (sim ticks)
    access: HashMap<String, i64>,
    /// refresh token → expiry
    refresh: HashMap<String, i64>,
    /// code → (expiry, redirect_uri)
    codes: HashMap<String, (i64, String)>,
}

/// A successful token response.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
}

impl Auth {
    pub fn new(rng: ChaCha8Rng, access_ttl: i64) -> Auth {
        Auth {
            rng,
            access_ttl,
            access: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
        }
    }

    fn hex32(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// Long base64url-ish opaque string, like an OWIN bearer token.
    fn opaque(&mut self) -> String {
        const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut b = [0u8; 180];
        self.rng.fill_bytes(&mut b);
        b.iter()
            .map(|x| ALPHA[(*x & 63) as usize] as char)
            .collect()
    }

    /// A fresh refresh token (what `/_sim/grant` hands the test client).
    pub fn grant(&mut self, now: i64) -> String {
        let t = self.hex32();
        self.refresh.insert(t.clone(), now + REFRESH_TTL);
        t
    }

    pub fn code(&mut self, now: i64, redirect_uri: &str) -> String {
        let c = self.hex32();
        self.codes
            .insert(c.clone(), (now + CODE_TTL, redirect_uri.to_owned()));
        c
    }

    fn issue(&mut self, now: i64) -> TokenResponse {
        let access = self.opaque();
        self.access.insert(access.clone(), now + self.access_ttl);
        TokenResponse {
            access_token: access,
            token_type: "bearer",
            expires_in: (self.access_ttl / TICKS_PER_SEC) as u64,
            refresh_token: self.grant(now),
        }
    }

    /// `grant_type=authorization_code`: the code is single-use.
    pub fn exchange_code(
        &mut self,
        now: i64,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<TokenResponse, &'static str> {
        match self.codes.remove(code) {
            Some((exp, uri)) if exp > now && redirect_uri.is_none_or(|r| r == uri) => {
                Ok(self.issue(now))
            }
            _ => Err("invalid_grant"),
        }
    }

    /// `grant_type=refresh_token`: spends the old refresh token and returns a new pair.
    pub fn refresh(&mut self, now: i64, token: &str) -> Result<TokenResponse, &'static str> {
        match self.refresh.remove(token) {
            Some(exp) if exp > now => Ok(self.issue(now)),
            _ => Err("invalid_grant"),
        }
    }

    pub fn check_access(&self, now: i64, token: &str) -> bool {
        self.access.get(token).is_some_and(|exp| *exp > now)
    }

    pub fn expire_access_tokens(&mut self) {
        self.access.clear();
    }

    pub fn revoke_all(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.codes.clear();
    }
}
