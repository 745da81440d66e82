//! Logging: `tracing` events to stderr (`RUST_LOG`, default `info`).
//!
//! OTLP export is not built in yet: `opentelemetry_sdk` and `tracing-opentelemetry` turn on
//! the `default` features of `futures-executor` and `tracing-core`, which the rest of the
//! workspace does not use, so every crate above them (tonic, object_store, parquet, all of
//! DataFusion) would be compiled a second time for this one binary. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, the coordinator says so once, as a warning. Each sidecar
//! request still carries a W3C `traceparent`, whose ids are on the `worker_resolver.poll` span
//! (`trace_id`, `span_id` in the logs), so the sidecar's trace can be found from them.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Installs the global subscriber: fmt to stderr, ANSI colours only on a terminal.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tonic=warn,hyper=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    tracing_subscriber::registry().with(fmt).init();
    if let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        if !endpoint.trim().is_empty() {
            tracing::warn!(endpoint = %endpoint, "OTLP export is not built into this coordinator yet; spans are logged, not exported");
        }
    }
}
