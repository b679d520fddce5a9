//! The prober's HTTP side: credentials as header lines, a request budget, a rate limit, a
//! per-request timeout, `429 Retry-After`, and the rule that nothing but GET goes to a host
//! that is not loopback unless writes were allowed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::HttpProbeError;

/// One tenant's credentials: header lines (`Authorization: Bearer …`, `X-Api-Key: …`, a
/// cookie…). Never printed: `Debug` shows the header names only.
#[derive(Clone)]
pub struct Credentials {
    headers: Vec<(String, SecretString)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "Credentials({names:?}, values redacted)")
    }
}

impl Credentials {
    /// Parses header lines (`Name: value`, one per line; blank lines and `#` comments are
    /// skipped). `what` names the source in errors, which never contain the values.
    pub fn parse(text: &str, what: &str) -> Result<Credentials, HttpProbeError> {
        let mut headers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(HttpProbeError::Credentials(format!(
                    "{what}, line {}: expected `Header-Name: value`",
                    i + 1
                )));
            };
            let name = name.trim();
            if HeaderName::from_bytes(name.as_bytes()).is_err()
                || HeaderValue::from_str(value.trim()).is_err()
            {
                return Err(HttpProbeError::Credentials(format!(
                    "{what}, line {}: not a valid header name or value",
                    i + 1
                )));
            }
            headers.push((
                name.to_string(),
                SecretString::from(value.trim().to_string()),
            ));
        }
        if headers.is_empty() {
            return Err(HttpProbeError::Credentials(format!(
                "{what}: no header line (expected e.g. `Authorization: Bearer …`)"
            )));
        }
        Ok(Credentials { headers })
    }

    /// The header names (for reports; never the values).
    pub fn names(&self) -> Vec<String> {
        self.headers.iter().map(|(n, _)| n.clone()).collect()
    }

    fn apply(&self, map: &mut HeaderMap) {
        for (n, v) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v.expose_secret()),
            ) {
                let mut v = v;
                v.set_sensitive(true);
                map.insert(n, v);
            }
        }
    }
}

/// A decoded answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty or not JSON).
    pub json: Value,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request was not answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The request budget is spent.
    #[error("the request budget ({0}) is spent")]
    Budget(usize),
    /// A write to a host that is not loopback, without `--allow-writes`.
    #[error("{0} to a host that is not loopback is refused without --allow-writes")]
    WriteRefused(String),
    /// Still 429 after the retries, or a `Retry-After` longer than we wait.
    #[error("rate limited by the target: {0}")]
    RateLimited(String),
    /// Connection, TLS or timeout.
    #[error("no answer: {0}")]
    Transport(String),
}

/// Limits of a run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// At most this many requests in all (retries included).
    pub max_requests: usize,
    /// At most this many requests per second (0: unlimited).
    pub rate: f64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether non-GET requests may go to a host that is not loopback.
    pub allow_writes: bool,
}

/// The client every request of a run goes through.
pub struct Client {
    http: reqwest::Client,
    /// `scheme://host:port` plus the document's relative base path.
    base: String,
    limits: Limits,
    loopback: bool,
    sent: usize,
    last: Option<Instant>,
    /// Longest `Retry-After` honoured.
    max_wait: Duration,
}

impl Client {
    /// A client for `base`; resolves the host once to decide whether it is loopback.
    pub async fn new(base: &str, limits: Limits) -> Result<Client, HttpProbeError> {
        let url = reqwest::Url::parse(base)
            .map_err(|e| HttpProbeError::Usage(format!("--base {base:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpProbeError::Usage(format!(
                "--base must be http:// or https://, not {}",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| HttpProbeError::Usage("--base has no host".into()))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let loopback = is_loopback(&host, port).await;
        let http = reqwest::Client::builder()
            .timeout(limits.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "tenantguard-probe-http/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| HttpProbeError::Connection(e.to_string()))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            limits,
            loopback,
            sent: 0,
            last: None,
            max_wait: Duration::from_secs(30),
        })
    }

    /// Appends the document's relative server path.
    pub fn set_base_path(&mut self, path: &str) {
        if !path.is_empty() && !self.base.ends_with(path) {
            self.base.push_str(path);
        }
    }

    /// The effective base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the target host is loopback.
    pub fn loopback(&self) -> bool {
        self.loopback
    }

    /// Whether writes may be sent.
    pub fn writes_allowed(&self) -> bool {
        self.loopback || self.limits.allow_writes
    }

    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Requests left in the budget.
    pub fn left(&self) -> usize {
        self.limits.max_requests.saturating_sub(self.sent)
    }

    /// Sends one request to `path_and_query` (relative to the base, or an absolute URL on
    /// the same origin, as a `next` link is) as `who`.
    pub async fn send(
        &mut self,
        who: Option<&Credentials>,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
        extra: &[(String, String)],
    ) -> Result<Answer, SendError> {
        if method != "GET" && method != "HEAD" && !self.writes_allowed() {
            return Err(SendError::WriteRefused(method.to_string()));
        }
        let url = if path_and_query.starts_with("http://") || path_and_query.starts_with("https://")
        {
            path_and_query.to_string()
        } else {
            format!("{}{}", self.base, path_and_query)
        };
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| SendError::Transport(e.to_string()))?;
        let mut attempt = 0;
        loop {
            if self.sent >= self.limits.max_requests {
                return Err(SendError::Budget(self.limits.max_requests));
            }
            self.pace().await;
            let mut headers = HeaderMap::new();
            headers.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            );
            if let Some(c) = who {
                c.apply(&mut headers);
            }
            for (n, v) in extra {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(n.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    headers.insert(n, v);
                }
            }
            let mut req = self.http.request(m.clone(), &url).headers(headers);
            if let Some(b) = body {
                req = req.json(b);
            }
            self.sent += 1;
            let res = req
                .send()
                .await
                .map_err(|e| SendError::Transport(crate::error_chain(&e)))?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            if status == 429 && attempt < 3 {
                attempt += 1;
                let wait = retry_after(&headers).unwrap_or(Duration::from_secs(1 << attempt));
                if wait > self.max_wait {
                    return Err(SendError::RateLimited(format!(
                        "429 with Retry-After {}s (longer than {}s)",
                        wait.as_secs(),
                        self.max_wait.as_secs()
                    )));
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == 429 {
                return Err(SendError::RateLimited("still 429 after 3 retries".into()));
            }
            let bytes = res
                .bytes()
                .await
                .map_err(|e| SendError::Transport(crate::error_chain(&e)))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Ok(Answer {
                status,
                headers,
                json,
                text,
            });
        }
    }

    async fn pace(&mut self) {
        if self.limits.rate > 0.0 {
            let gap = Duration::from_secs_f64(1.0 / self.limits.rate);
            if let Some(last) = self.last {
                let since = last.elapsed();
                if since < gap {
                    tokio::time::sleep(gap - since).await;
                }
            }
        }
        self.last = Some(Instant::now());
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64;
    Some(Duration::from_secs(secs))
}

/// Whether `host` is loopback: a loopback address, `localhost`, or a name that resolves
/// only to loopback addresses.
pub async fn is_loopback(host: &str, port: u16) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    if h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    match tokio::net::lookup_host((h, port)).await {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_and_never_show_values() {
        let c = Credentials::parse("# tenant A\nAuthorization: Bearer s3cret\nX-Org: 7\n", "A")
            .expect("parse");
        assert_eq!(c.names(), vec!["Authorization", "X-Org"]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = Credentials::parse("Bearer s3cret", "TENANTGUARD_PROBE_TENANT_A").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(Credentials::parse("\n", "A").is_err());
    }

    #[tokio::test]
    async fn only_loopback_takes_writes_without_allow_writes() {
        assert!(is_loopback("127.0.0.1", 80).await);
        assert!(is_loopback("[::1]", 80).await);
        assert!(is_loopback("localhost", 80).await);
        assert!(!is_loopback("192.0.2.1", 80).await);
        let limits = Limits {
            max_requests: 10,
            rate: 0.0,
            timeout: Duration::from_secs(1),
            allow_writes: false,
        };
        // Never sent: refused before any connection.
        let mut c = Client::new("http://192.0.2.1:9", limits.clone())
            .await
            .expect("client");
        assert!(!c.writes_allowed());
        let e = c.send(None, "POST", "/x", None, &[]).await.unwrap_err();
        assert!(matches!(e, SendError::WriteRefused(_)), "{e}");
        assert_eq!(c.sent(), 0);
        let c = Client::new(
            "http://192.0.2.1:9",
            Limits {
                allow_writes: true,
                ..limits
            },
        )
        .await
        .expect("client");
        assert!(c.writes_allowed());
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(0)));
    }
}
