//! Client for the `worker-resolver` sidecar: an always-fresh, lock-free list of healthy
//! Distributed DataFusion workers, discovered from Consul (or DNS SRV) by the sidecar.
//!
//! One background tokio task keeps **one** long poll of `GET /v1/workers?index=N&wait=…`
//! outstanding (the sidecar answers like a Consul blocking query) and publishes each change
//! by an atomic pointer swap ([`arc_swap`]), so a synchronous read takes no lock and does no I/O.
//! While the sidecar is unreachable the client retries with capped, fully jittered backoff and
//! keeps serving the last good list — it never empties the list because the sidecar is down —
//! and reports staleness both ways ([`Status`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use worker_resolver_client::{ClientConfig, SidecarClient};
//!
//! # async fn example() -> Result<(), worker_resolver_client::Error> {
//! let config = ClientConfig::builder("http://127.0.0.1:9464")
//!     .wait(Duration::from_secs(60))
//!     .build()?;
//! let client = SidecarClient::start(config)?;
//! let first = client.ready(Duration::from_secs(10)).await?;
//! println!("{} workers from {}", first.urls.len(), first.source.as_str());
//! let urls = client.urls(); // Arc<[Url]>: no lock, no I/O
//! # let _ = urls;
//! let mut changes = client.subscribe();
//! changes.changed().await.ok();
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! With the `datafusion-distributed` feature, [`WorkerReader`] implements
//! `datafusion_distributed::WorkerResolver`, and the `datafusion` module offers per-query
//! pinned snapshots and a route-tasks handler that routes against the snapshot the plan used.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backoff;
mod client;
mod config;
mod error;
mod index;
mod reader;
mod routing;
mod snapshot;
mod traceparent;
mod wire;

#[cfg(feature = "datafusion-distributed")]
pub mod datafusion;

pub use backoff::Backoff;
pub use client::SidecarClient;
pub use config::{ClientConfig, ClientConfigBuilder};
pub use error::Error;
pub use index::{IndexStep, next_index};
pub use reader::{Status, WorkerReader};
pub use routing::{RoutingStrategy, route_candidates, route_tasks};
pub use snapshot::{Source, Worker, WorkerSnapshot};
pub use traceparent::TraceParent;
pub use url::Url;
