//! Rate limits (issue 4 point 9, reliability matrix F7): sign-in per client IP,
//! account, device and tenant; `/v1/sync` and the live upgrade per device and
//! tenant.
//!
//! Every limiter is keyed (governor's GCRA over a concurrent map), so a key's flood
//! spends only that key's quota: one tenant's flood never blocks another tenant, and
//! there is no global limiter a flood could exhaust. The narrow key is checked
//! first and a refused request spends nothing of the wider ones, so one device
//! flooding does not eat its tenant's quota either. Over a quota the answer is 429
//! with `Retry-After` (whole seconds, rounded up) and the request is not processed:
//! sync is gated on the token's signature alone (no database read), sign-in before
//! the password is verified.
//!
//! Idle keys are forgotten every [`HOUSEKEEPING_EVERY`] checks, so a flood of new
//! keys (random emails, device ids) cannot grow the maps without bound.

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use crewsync_core::ids::{ClientId, DeviceId};
use crewsync_core::sync::auth::SignInRequest;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::Services;
use crate::auth::http::{AuthError, bearer_token};

/// Forget idle keys after this many checks of one limiter.
pub const HOUSEKEEPING_EVERY: u64 = 4096;

/// Largest sign-in body the gate reads (an email, a password and a device id).
pub const SIGN_IN_BODY_LIMIT: usize = 64 * 1024;

/// "N per period": a burst of N, refilled evenly over the period. Written `N/s`,
/// `N/min` or `N/h` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl RateLimit {
    pub const fn per_minute(count: NonZeroU32) -> Self {
        Self {
            count,
            period: Duration::from_secs(60),
        }
    }

    pub const fn per_second(count: NonZeroU32) -> Self {
        Self {
            count,
            period: Duration::from_secs(1),
        }
    }

    fn quota(&self) -> Quota {
        let interval = self.period / self.count.get();
        Quota::with_period(interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => return write!(f, "{}/{}s", self.count, self.period.as_secs()),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl FromStr for RateLimit {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?}: expected N/s, N/min or N/h with N > 0 (e.g. 600/min)");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Self { count, period })
    }
}

const fn nz(n: u32) -> NonZeroU32 {
    // Only called with literals > 0 below.
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// Sign-ins from one client IP: a depot's shared connection signs in a whole fleet
/// at shift start.
pub const DEFAULT_SIGN_IN_PER_IP: RateLimit = RateLimit::per_minute(nz(300));
/// Sign-ins to one account: a person retrying a password, not a guesser.
pub const DEFAULT_SIGN_IN_PER_ACCOUNT: RateLimit = RateLimit::per_minute(nz(10));
/// Sign-ins from one device: a shared tablet's crew signing in one after another.
pub const DEFAULT_SIGN_IN_PER_DEVICE: RateLimit = RateLimit::per_minute(nz(10));
/// Sign-ins to one tenant: every device of a large company at shift start.
pub const DEFAULT_SIGN_IN_PER_TENANT: RateLimit = RateLimit::per_minute(nz(1200));
/// Syncs (and live upgrades) from one device: a device draining a long log pages
/// back to back; a healthy one syncs every few seconds at most.
pub const DEFAULT_SYNC_PER_DEVICE: RateLimit = RateLimit::per_minute(nz(1200));
/// Syncs (and live upgrades) of one tenant: a few thousand devices reconnecting.
pub const DEFAULT_SYNC_PER_TENANT: RateLimit = RateLimit::per_minute(nz(60_000));

/// The configured quotas (see `config::Config` for the flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    pub sign_in_per_ip: RateLimit,
    pub sign_in_per_account: RateLimit,
    pub sign_in_per_device: RateLimit,
    pub sign_in_per_tenant: RateLimit,
    pub sync_per_device: RateLimit,
    pub sync_per_tenant: RateLimit,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            sign_in_per_ip: DEFAULT_SIGN_IN_PER_IP,
            sign_in_per_account: DEFAULT_SIGN_IN_PER_ACCOUNT,
            sign_in_per_device: DEFAULT_SIGN_IN_PER_DEVICE,
            sign_in_per_tenant: DEFAULT_SIGN_IN_PER_TENANT,
            sync_per_device: DEFAULT_SYNC_PER_DEVICE,
            sync_per_tenant: DEFAULT_SYNC_PER_TENANT,
        }
    }
}

/// A request over a quota: which one, and when to come back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many requests ({scope}): retry after {} s", self.retry_after_secs())]
pub struct Limited {
    /// Which quota: `sign-in per IP`, `sync per tenant`, …
    pub scope: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up (at least 1: 0 would invite an
    /// immediate retry that is refused again).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let secs = if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        };
        secs.max(1)
    }
}

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        tracing::debug!(scope = self.scope, retry_after = ?self.retry_after, "rate limited");
        let mut response = (StatusCode::TOO_MANY_REQUESTS, self.to_string()).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs()),
        );
        response
    }
}

/// One keyed quota.
struct Limiter<K: Hash + Eq + Clone> {
    scope: &'static str,
    inner: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(scope: &'static str, limit: RateLimit) -> Self {
        Self {
            scope,
            inner: DefaultKeyedRateLimiter::keyed(limit.quota()),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % HOUSEKEEPING_EVERY
            == HOUSEKEEPING_EVERY - 1
        {
            self.inner.retain_recent();
            self.inner.shrink_to_fit();
        }
        self.inner.check_key(key).map_err(|not_until| Limited {
            scope: self.scope,
            retry_after: not_until.wait_time_from(self.inner.clock().now()),
        })
    }
}

/// The quotas a server enforces; [`Limits::none`] enforces nothing.
pub struct Limits {
    quotas: Option<Quotas>,
}

struct Quotas {
    sign_in_ip: Limiter<IpAddr>,
    sign_in_account: Limiter<String>,
    sign_in_device: Limiter<DeviceId>,
    sign_in_tenant: Limiter<ClientId>,
    sync_device: Limiter<DeviceId>,
    sync_tenant: Limiter<ClientId>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("enforced", &self.quotas.is_some())
            .finish()
    }
}

impl Limits {
    pub fn new(config: &LimitConfig) -> Self {
        Self {
            quotas: Some(Quotas {
                sign_in_ip: Limiter::new("sign-in per IP", config.sign_in_per_ip),
                sign_in_account: Limiter::new("sign-in per account", config.sign_in_per_account),
                sign_in_device: Limiter::new("sign-in per device", config.sign_in_per_device),
                sign_in_tenant: Limiter::new("sign-in per tenant", config.sign_in_per_tenant),
                sync_device: Limiter::new("sync per device", config.sync_per_device),
                sync_tenant: Limiter::new("sync per tenant", config.sync_per_tenant),
            }),
        }
    }

    /// No quotas at all: the control that shows a limits test bites, and benches
    /// that measure the server rather than its limits.
    pub fn none() -> Self {
        Self { quotas: None }
    }

    /// A sync or live upgrade from `device` of `tenant` (device first: a refused
    /// device spends nothing of its tenant's quota).
    pub fn sync(&self, tenant: ClientId, device: DeviceId) -> Result<(), Limited> {
        let Some(q) = &self.quotas else { return Ok(()) };
        q.sync_device.check(&device)?;
        q.sync_tenant.check(&tenant)
    }

    /// A sign-in attempt, before anything is looked up: its client IP (when known),
    /// then the account and device it names (when the body parses).
    pub fn sign_in_attempt(
        &self,
        ip: Option<IpAddr>,
        account: Option<(&str, DeviceId)>,
    ) -> Result<(), Limited> {
        let Some(q) = &self.quotas else { return Ok(()) };
        if let Some(ip) = ip {
            q.sign_in_ip.check(&ip)?;
        }
        if let Some((email, device)) = account {
            q.sign_in_device.check(&device)?;
            q.sign_in_account.check(&email.trim().to_lowercase())?;
        }
        Ok(())
    }

    /// A sign-in to an account of `tenant`.
    pub fn sign_in_tenant(&self, tenant: ClientId) -> Result<(), Limited> {
        let Some(q) = &self.quotas else { return Ok(()) };
        q.sign_in_tenant.check(&tenant)
    }
}

/// Middleware for `/v1/sync` and `/v1/live`: the token's signature is verified
/// (no database read) and its device and tenant charged before the handler runs.
/// A bad token is refused here exactly as the handler would refuse it.
pub async fn sync_gate(State(services): State<Services>, request: Request, next: Next) -> Response {
    let claims = match bearer_token(request.headers(), request.uri())
        .and_then(|token| services.auth.keys.validate(token).map_err(AuthError::from))
    {
        Ok(claims) => claims,
        Err(e) => return e.into_response(),
    };
    if let Err(limited) = services.limits.sync(claims.tid, claims.dev) {
        return limited.into_response();
    }
    next.run(request).await
}

/// Middleware for `POST /v1/auth/sign-in`: charges the client IP, the device and
/// the account the body names, then the account's tenant, before the password is
/// verified. A body that does not parse is charged to its IP and left to the
/// handler to refuse.
pub async fn sign_in_gate(
    State(services): State<Services>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, SIGN_IN_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("sign-in body larger than {SIGN_IN_BODY_LIMIT} bytes"),
            )
                .into_response();
        }
    };
    let parsed: Option<SignInRequest> = serde_json::from_slice(&bytes).ok();
    let account = parsed.as_ref().map(|r| (r.email.as_str(), r.device_id));
    if let Err(limited) = services.limits.sign_in_attempt(ip, account) {
        return limited.into_response();
    }
    if let Some(request) = &parsed {
        match services.auth.directory.user_by_email(&request.email).await {
            Ok(Some(user)) => {
                if let Err(limited) = services.limits.sign_in_tenant(user.tenant) {
                    return limited.into_response();
                }
            }
            Ok(None) => {}
            Err(e) => return AuthError::from(e).into_response(),
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let limit: RateLimit = "600/min".parse().unwrap();
        assert_eq!(limit, RateLimit::per_minute(nz(600)));
        assert_eq!(limit.to_string(), "600/min");
        assert_eq!("5/s".parse::<RateLimit>().unwrap().to_string(), "5/s");
        assert_eq!(
            "2/h".parse::<RateLimit>().unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in ["0/min", "600", "x/min", "5/day", "-1/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_past_its_burst_is_refused_and_others_are_not() {
        let limits = Limits::new(&LimitConfig {
            sync_per_device: RateLimit::per_minute(nz(3)),
            ..LimitConfig::default()
        });
        let (tenant, flood, quiet) = (ClientId::new(), DeviceId::new(), DeviceId::new());
        for _ in 0..3 {
            limits.sync(tenant, flood).unwrap();
        }
        let refused = limits.sync(tenant, flood).unwrap_err();
        assert_eq!(refused.scope, "sync per device");
        // 3 a minute: the next cell is ~20 s away, rounded up.
        assert!(
            (1..=20).contains(&refused.retry_after_secs()),
            "{refused:?}"
        );
        limits.sync(tenant, quiet).unwrap();
        // The control: no quotas, no refusals.
        let none = Limits::none();
        for _ in 0..100 {
            none.sync(tenant, flood).unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let at = |d| Limited {
            scope: "x",
            retry_after: d,
        };
        assert_eq!(at(Duration::from_millis(1)).retry_after_secs(), 1);
        assert_eq!(at(Duration::from_millis(1001)).retry_after_secs(), 2);
        assert_eq!(at(Duration::from_secs(3)).retry_after_secs(), 3);
        assert_eq!(at(Duration::ZERO).retry_after_secs(), 1);
    }
}
