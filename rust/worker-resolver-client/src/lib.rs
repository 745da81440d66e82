//! Client for the `worker-resolver` sidecar: an always-fresh, lock-free list of healthy
//! Distributed DataFusion workers, discovered from Consul (or DNS SRV) by the sidecar.
//!
//! With the `datafusion-distributed` feature, [`SidecarWorkerResolver`] is the
//! `datafusion_distributed::WorkerResolver` a coordinator hands to DataFusion, and one call
//! installs it with its router and a per-query pin:
//!
//! ```no_run
//! # #[cfg(feature = "datafusion-distributed")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use datafusion::execution::SessionStateBuilder;
//! use datafusion::prelude::SessionContext;
//! use datafusion_distributed::SessionStateBuilderExt;
//! use std::time::Duration;
//! use worker_resolver_client::datafusion::SidecarResolverExt;
//! use worker_resolver_client::{ClientConfig, SidecarWorkerResolver};
//!
//! let resolver = SidecarWorkerResolver::start(ClientConfig::builder("http://127.0.0.1:9464").build()?)?;
//! resolver.ready(Duration::from_secs(10)).await?;
//! let state = SessionStateBuilder::new()
//!     .with_default_features()
//!     .with_distributed_planner()
//!     .with_sidecar_worker_resolver(resolver.clone()) // resolver + router + per-query pin
//!     .build();
//! let ctx = SessionContext::new_with_state(state);
//! # let _ = ctx; Ok(()) }
//! ```
//!
//! One background tokio task, owned by the resolver's clones, keeps **one** long poll of
//! `GET /v1/workers?index=N&wait=…` outstanding (the sidecar answers like a Consul blocking
//! query) and publishes each change by an atomic pointer swap ([`arc_swap`]), so a synchronous
//! read takes no lock and does no I/O. While the sidecar is unreachable the client retries
//! (refused connections within a second, other errors with capped, fully jittered backoff)
//! and keeps serving the last good list — it never empties the list because the sidecar is
//! down — and reports staleness both ways ([`Status`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use worker_resolver_client::{ClientConfig, SidecarWorkerResolver};
//!
//! # async fn example() -> Result<(), worker_resolver_client::Error> {
//! let config = ClientConfig::builder("http://127.0.0.1:9464")
//!     .wait(Duration::from_secs(60))
//!     .build()?;
//! let resolver = SidecarWorkerResolver::start(config)?;
//! let first = resolver.ready(Duration::from_secs(10)).await?;
//! println!("{} workers from {}", first.urls.len(), first.source.as_str());
//! let urls = resolver.urls(); // Arc<[Url]>: no lock, no I/O
//! # let _ = urls;
//! let mut changes = resolver.subscribe();
//! changes.changed().await.ok();
//! resolver.close().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod config;
mod connect;
mod error;
mod index;
mod reader;
mod resolver;
#[cfg_attr(not(feature = "datafusion-distributed"), allow(dead_code))]
mod routing;
mod snapshot;
mod traceparent;
mod wire;

#[cfg(feature = "datafusion-distributed")]
#[cfg_attr(docsrs, doc(cfg(feature = "datafusion-distributed")))]
pub mod datafusion;

pub use config::{ClientConfig, ClientConfigBuilder, TraceparentProvider};
pub use error::{Cause, Error};
pub use reader::{Status, WorkerReader};
pub use resolver::SidecarWorkerResolver;
pub use routing::RoutingStrategy;
pub use snapshot::{Source, Worker, WorkerSnapshot};
pub use url::Url;
