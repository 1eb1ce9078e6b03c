//! Addresses the config judges: whether one is loopback (the status endpoint without a token, a
//! plain SMTP connection).

/// A loopback address, IPv4-mapped ones included (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}
