//! Request rate limits, answered with 429 and `Retry-After`: per device for
//! authenticated requests (a misbehaving app in a retry loop cannot starve the
//! others), and for logins both per organisation and email (guessing one
//! account's password) and per client address (one address trying many
//! accounts; which address counts is `domain::address`'s decision).
//!
//! Limits are kept in memory per server node (`governor`'s keyed GCRA limiter),
//! so with several nodes behind a balancer a device gets the limit once per node.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::Error;

/// The limiters of one node.
pub struct Limits {
    requests: Option<DefaultKeyedRateLimiter<String>>,
    logins: Option<DefaultKeyedRateLimiter<String>>,
    login_addresses: Option<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("requests", &self.requests.is_some())
            .field("logins", &self.logins.is_some())
            .field("login_addresses", &self.login_addresses.is_some())
            .finish()
    }
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn check(limiter: &Option<DefaultKeyedRateLimiter<String>>, key: String) -> Result<(), Error> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if limiter.len() > 100_000 {
        // Forget keys whose budget is full again, so memory stays bounded.
        limiter.retain_recent();
    }
    limiter.check_key(&key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        Error::RateLimited(wait.max(Duration::from_secs(1)))
    })
}

impl Limits {
    /// Limits of `requests_per_minute` per device, `logins_per_minute` per
    /// login name and `logins_per_address` per client address and minute;
    /// 0 turns one off.
    pub fn new(
        requests_per_minute: u32,
        logins_per_minute: u32,
        logins_per_address: u32,
    ) -> Limits {
        Limits {
            requests: limiter(requests_per_minute),
            logins: limiter(logins_per_minute),
            login_addresses: limiter(logins_per_address),
        }
    }

    /// Counts an authenticated request of `device`.
    pub fn request(&self, device: &str) -> Result<(), Error> {
        check(&self.requests, device.to_owned())
    }

    /// Counts a login attempt from the client address `from` (`None`: not
    /// known, e.g. a test calling the service directly; not counted).
    pub fn login_from(&self, from: Option<IpAddr>) -> Result<(), Error> {
        match from {
            Some(ip) => check(&self.login_addresses, ip.to_string()),
            None => Ok(()),
        }
    }

    /// Counts a login attempt for `email` in `org`.
    pub fn login(&self, org: &str, email: &str) -> Result<(), Error> {
        check(
            &self.logins,
            format!("{}/{}", org.to_lowercase(), email.trim().to_lowercase()),
        )
    }
}
