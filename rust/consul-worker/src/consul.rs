//! The few Consul agent HTTP API calls a worker makes: register (with its health check),
//! service maintenance, deregister.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A Consul agent client.
pub struct Consul {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// A failed Consul call.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// No answer.
    #[error("consul {0}: {1}")]
    Transport(String, String),
    /// A non-200 answer.
    #[error("consul {0}: HTTP {1}: {2}")]
    Status(String, u16, String),
}

impl Consul {
    /// A client for the agent at `base` (e.g. `http://127.0.0.1:8500`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        Consul {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    async fn put(&self, path: &str, body: Option<String>) -> Result<(), ConsulError> {
        let url = format!("{}{}", self.base, path);
        let mut req = http::Request::put(&url).header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("x-consul-token", t);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ConsulError::Transport(path.to_owned(), e.to_string()))?;
        let res = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| ConsulError::Transport(path.to_owned(), "timed out".into()))?
            .map_err(|e| ConsulError::Transport(path.to_owned(), e.to_string()))?;
        let status = res.status().as_u16();
        if status != 200 {
            let text = res
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(ConsulError::Status(path.to_owned(), status, text));
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/register` with one HTTP check.
    pub async fn register(&self, reg: &Registration) -> Result<(), ConsulError> {
        let body = serde_json::json!({
            "Name": reg.service,
            "ID": reg.id,
            "Address": reg.address,
            "Port": reg.port,
            "Tags": ["datafusion-worker"],
            "Meta": { "version": env!("CARGO_PKG_VERSION") },
            "Check": {
                "CheckID": format!("{}:health", reg.id),
                "Name": "datafusion worker health",
                "HTTP": reg.check_url,
                "Method": "GET",
                "Interval": format!("{}ms", reg.check_interval.as_millis()),
                "Timeout": format!("{}ms", reg.check_timeout.as_millis()),
                "DeregisterCriticalServiceAfter": "1m",
            }
        });
        self.put("/v1/agent/service/register", Some(body.to_string()))
            .await
    }

    /// Service maintenance on (excluded from healthy answers at once) or off.
    pub async fn maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), ConsulError> {
        let reason: String = reason
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '+' })
            .collect();
        self.put(
            &format!("/v1/agent/service/maintenance/{id}?enable={enable}&reason={reason}"),
            None,
        )
        .await
    }

    /// `PUT /v1/agent/service/deregister/{id}`.
    pub async fn deregister(&self, id: &str) -> Result<(), ConsulError> {
        self.put(&format!("/v1/agent/service/deregister/{id}"), None)
            .await
    }
}

/// What a worker registers.
pub struct Registration {
    /// Service name.
    pub service: String,
    /// Service ID.
    pub id: String,
    /// Address tasks are sent to.
    pub address: String,
    /// The gRPC port.
    pub port: u16,
    /// The HTTP check's URL.
    pub check_url: String,
    /// The check's interval.
    pub check_interval: Duration,
    /// The check's timeout.
    pub check_timeout: Duration,
}
