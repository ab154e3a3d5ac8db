//! [`SessionConfig`]: expiry and cookie settings of the session layer (not of the store).

use std::time::Duration;

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites, not on their sub-requests (the default).
    Lax,
    /// Never sent on requests started by another site.
    Strict,
    /// Always sent (browsers then require `Secure`).
    None,
}

impl SameSite {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// When the session cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurePolicy {
    /// When the request came over HTTPS: an `https` URI or `X-Forwarded-Proto: https` (the default).
    Auto,
    /// Always.
    Always,
    /// Never (plain-HTTP development only).
    Never,
}

/// How sessions expire and how their cookie looks.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_lifetime: Duration,
    pub(crate) cookie_name: String,
    pub(crate) same_site: SameSite,
    pub(crate) secure: SecurePolicy,
    pub(crate) host_prefix: bool,
}

impl Default for SessionConfig {
    /// 30 minutes idle, 12 hours at most, cookie `shoal_session`, `SameSite=Lax`, `Secure` over HTTPS.
    fn default() -> Self {
        SessionConfig {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_lifetime: Duration::from_secs(12 * 3600),
            cookie_name: "shoal_session".to_owned(),
            same_site: SameSite::Lax,
            secure: SecurePolicy::Auto,
            host_prefix: false,
        }
    }
}

impl SessionConfig {
    /// A session not used for this long is gone. Reads refresh it once half of it has passed.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle.max(Duration::from_millis(1));
        self
    }

    /// A session is gone this long after it was created, however busy it is.
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute_lifetime = lifetime.max(Duration::from_millis(1));
        self
    }

    /// The cookie's name (without the `__Host-` prefix).
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The cookie's `SameSite` attribute.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// When the cookie carries `Secure`.
    pub fn with_secure(mut self, secure: SecurePolicy) -> Self {
        self.secure = secure;
        self
    }

    /// Name the cookie `__Host-NAME`: browsers then only accept it with `Secure`, `Path=/` and
    /// no `Domain`, so a sibling subdomain cannot plant a session id. Implies `Secure`.
    pub fn with_host_prefix(mut self, on: bool) -> Self {
        self.host_prefix = on;
        self
    }

    pub(crate) fn cookie_name(&self) -> String {
        if self.host_prefix {
            format!("__Host-{}", self.cookie_name)
        } else {
            self.cookie_name.clone()
        }
    }
}
