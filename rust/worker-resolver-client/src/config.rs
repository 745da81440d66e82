//! Validated configuration of a [`crate::SidecarWorkerResolver`].

use crate::backoff::Backoff;
use crate::error::Error;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The sidecar's cap on `?wait` (Consul's 10 minutes).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The default `stale_after`: a held poll is contact, so this only runs while no connection to
/// the sidecar is open (refused connections are retried within a second).
const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(15);

/// Produces the `traceparent` header of a poll request; called inside the poll's span.
pub type TraceparentProvider = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Configuration of a [`crate::SidecarWorkerResolver`], built and validated by [`ClientConfig::builder`].
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) base: Url,
    pub(crate) wait: Duration,
    pub(crate) request_grace: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) stale_after: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) traceparent: Option<TraceparentProvider>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("sidecar_url", &self.base.as_str())
            .field("wait", &self.wait)
            .field("request_grace", &self.request_grace)
            .field("backoff", &self.backoff)
            .field("stale_after", &self.stale_after)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "traceparent",
                &self.traceparent.as_ref().map(|_| "provider"),
            )
            .finish()
    }
}

impl ClientConfig {
    /// Starts a builder for the sidecar at `sidecar_url` (e.g. `http://127.0.0.1:9464`).
    pub fn builder(sidecar_url: impl Into<String>) -> ClientConfigBuilder {
        ClientConfigBuilder {
            sidecar_url: sidecar_url.into(),
            wait: Duration::from_secs(60),
            request_grace: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(5),
            },
            stale_after: None,
            max_body_bytes: 16 << 20,
            traceparent: None,
        }
    }

    /// The sidecar's base URL.
    pub fn sidecar_url(&self) -> &Url {
        &self.base
    }

    /// The `?wait` of each long poll.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// How long a request may take before it is abandoned: the wait, the sidecar's jitter
    /// (up to wait/16) and the grace.
    pub fn request_timeout(&self) -> Duration {
        self.wait + self.wait / 16 + self.request_grace
    }

    /// The retry backoff while the sidecar is unreachable.
    pub(crate) fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// After this long without contact with the sidecar the client calls itself stale.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    pub(crate) fn traceparent_provider(&self) -> Option<&TraceparentProvider> {
        self.traceparent.as_ref()
    }

    pub(crate) fn workers_url(&self, index: u64) -> String {
        let mut s = self.base.as_str().trim_end_matches('/').to_owned();
        s.push_str("/v1/workers?index=");
        s.push_str(&index.to_string());
        s.push_str("&wait=");
        s.push_str(&self.wait.as_millis().to_string());
        s.push_str("ms");
        s
    }
}

/// Builder of a [`ClientConfig`]; [`ClientConfigBuilder::build`] validates every value.
#[derive(Clone)]
#[must_use]
pub struct ClientConfigBuilder {
    sidecar_url: String,
    wait: Duration,
    request_grace: Duration,
    backoff: Backoff,
    stale_after: Option<Duration>,
    max_body_bytes: usize,
    traceparent: Option<TraceparentProvider>,
}

impl std::fmt::Debug for ClientConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfigBuilder")
            .field("sidecar_url", &self.sidecar_url)
            .field("wait", &self.wait)
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

impl ClientConfigBuilder {
    /// The `?wait` of each long poll: how long the sidecar holds a request when nothing changes.
    /// Default 60 s; 1 ms to 10 min.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Extra time past `wait + wait/16` before a request is abandoned as timed out. Default 5 s.
    pub fn request_grace(mut self, grace: Duration) -> Self {
        self.request_grace = grace;
        self
    }

    /// The retry backoff while the sidecar is unreachable: full jitter in `[0, min(cap, base·2ⁿ⁻¹)]`.
    /// Default 100 ms, capped at 5 s.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff { base, cap };
        self
    }

    /// After this long without contact with the sidecar the client reports itself stale (the
    /// list is still served). Contact is an answer, or a long poll held on an open connection
    /// (the sidecar is there and has nothing new), so any value is meaningful whatever the
    /// `wait`. Default 15 s. (A sidecar that accepts connections but never answers, e.g. a
    /// stopped process, counts as contact until the request times out.)
    pub fn stale_after(mut self, after: Duration) -> Self {
        self.stale_after = Some(after);
        self
    }

    /// The `traceparent` of each poll request: `provider` is called inside the poll's
    /// `worker_resolver.poll` span (a root span, one trace per poll), so a coordinator using
    /// `tracing-opentelemetry` can return that span's context and the sidecar's span becomes its
    /// child. `None` from the provider (and the default) means a fresh random sampled trace.
    pub fn traceparent(
        mut self,
        provider: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.traceparent = Some(Arc::new(provider));
        self
    }

    /// The largest answer body accepted. Default 16 MiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Validates and builds the configuration.
    pub fn build(self) -> Result<ClientConfig, Error> {
        let base = Url::parse(&self.sidecar_url)
            .map_err(|e| Error::invalid("sidecar_url", format!("not a URL: {e}")))?;
        if base.scheme() != "http" {
            return Err(Error::invalid(
                "sidecar_url",
                "only http:// is supported (the sidecar listens next to the coordinator)",
            ));
        }
        if base.host_str().is_none() {
            return Err(Error::invalid("sidecar_url", "has no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::invalid(
                "sidecar_url",
                "must not have a query or fragment",
            ));
        }
        if self.wait < Duration::from_millis(1) || self.wait > MAX_WAIT {
            return Err(Error::invalid("wait", "must be between 1ms and 10m"));
        }
        if self.backoff.base.is_zero() || self.backoff.cap < self.backoff.base {
            return Err(Error::invalid(
                "backoff",
                "base must be > 0 and cap >= base",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(Error::invalid("max_body_bytes", "must be at least 1024"));
        }
        let mut cfg = ClientConfig {
            base,
            wait: self.wait,
            request_grace: self.request_grace,
            backoff: self.backoff,
            stale_after: Duration::ZERO,
            max_body_bytes: self.max_body_bytes,
            traceparent: self.traceparent,
        };
        cfg.stale_after = match self.stale_after {
            Some(d) if d.is_zero() => return Err(Error::invalid("stale_after", "must be > 0")),
            Some(d) => d,
            None => DEFAULT_STALE_AFTER,
        };
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = ClientConfig::builder("http://127.0.0.1:9464")
            .build()
            .unwrap();
        assert_eq!(c.wait(), Duration::from_secs(60));
        assert_eq!(
            c.request_timeout(),
            Duration::from_secs(60) + Duration::from_millis(3750) + Duration::from_secs(5)
        );
        assert_eq!(c.stale_after(), Duration::from_secs(15));
        assert_eq!(
            c.workers_url(12),
            "http://127.0.0.1:9464/v1/workers?index=12&wait=60000ms"
        );
    }

    #[test]
    fn base_path_is_kept() {
        let c = ClientConfig::builder("http://localhost:1/prefix/")
            .wait(Duration::from_millis(1500))
            .build()
            .unwrap();
        assert_eq!(
            c.workers_url(0),
            "http://localhost:1/prefix/v1/workers?index=0&wait=1500ms"
        );
    }

    #[test]
    fn bad_values_are_rejected_with_the_option_name() {
        let opt = |b: ClientConfigBuilder| match b.build() {
            Err(Error::InvalidConfig { option, .. }) => option,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        assert_eq!(opt(ClientConfig::builder("not a url")), "sidecar_url");
        assert_eq!(
            opt(ClientConfig::builder("https://127.0.0.1:1")),
            "sidecar_url"
        );
        assert_eq!(opt(ClientConfig::builder("http://h:1/?x=1")), "sidecar_url");
        assert_eq!(
            opt(ClientConfig::builder("http://h:1").wait(Duration::ZERO)),
            "wait"
        );
        assert_eq!(
            opt(ClientConfig::builder("http://h:1").wait(Duration::from_secs(601))),
            "wait"
        );
        assert_eq!(
            opt(ClientConfig::builder("http://h:1")
                .backoff(Duration::from_secs(2), Duration::from_secs(1))),
            "backoff"
        );
        assert_eq!(
            opt(ClientConfig::builder("http://h:1").stale_after(Duration::ZERO)),
            "stale_after"
        );
    }
}
