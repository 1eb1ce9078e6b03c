//! `ppsync health`: asks the running daemon's status endpoint (`http.listen`, with `http.token`
//! when set) one of its health routes. For probes run inside a container or by a supervisor, where
//! there is no curl and the token must not sit on a command line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret as _;

use crate::config::Config;

/// How long the endpoint may take: a probe that hangs is a failed probe.
const TIMEOUT: Duration = Duration::from_secs(5);

/// 0 when the route answers 200, 1 when it answers anything else (its body printed), 2 (an
/// error) when nothing answers.
pub(super) async fn health(cfg: Config, route: &str) -> anyhow::Result<i32> {
    if !matches!(route, "/livez" | "/readyz" | "/healthz") {
        bail!("--route {route:?} is not a health route: use /livez, /readyz or /healthz");
    }
    let Some(listen) = cfg.http_listen else {
        bail!(
            "http.listen is off, so there is no endpoint to ask: set http.listen (e.g. \"127.0.0.1:9187\")"
        );
    };
    let addr = local(listen);
    let url = format!("http://{addr}{route}");
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .context("cannot build an HTTP client")?;
    let mut req = client.get(&url);
    if let Some(token) = &cfg.http_token {
        req = req.bearer_auth(token.expose_secret());
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{url} does not answer: is `ppsync run` running?"))?;
    let code = resp.status();
    let body = resp.text().await.unwrap_or_default();
    outln!("{} {}", code.as_u16(), body.trim_end());
    Ok(if code.is_success() { 0 } else { 1 })
}

/// Where to reach an endpoint listening on `listen` from this machine: loopback when it listens
/// on every address.
fn local(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_asked_on_loopback() {
        let at = |s: &str| local(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:9187"), "127.0.0.1:9187");
        assert_eq!(at("[::]:9187"), "[::1]:9187");
        assert_eq!(at("10.0.0.7:80"), "10.0.0.7:80");
    }
}
