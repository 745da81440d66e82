//! Logging and tracing: `tracing` events to stderr (`RUST_LOG`, default `info`) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported as OTLP/HTTP JSON ([`crate::otlp`]).

use crate::otlp::{self, Exporter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Installs the global subscriber; returns the exporter to run when an endpoint is set.
pub fn init(service_name: &str) -> Option<Exporter> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tonic=warn,hyper=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty());
    let Some(endpoint) = endpoint else {
        tracing_subscriber::registry().with(fmt).init();
        return None;
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_owned());
    let (layer, exporter) = otlp::pipeline(&endpoint, &service);
    let spans = EnvFilter::new("info,h2=off,tonic=off,hyper=off,tower=off,otlp=off");
    tracing_subscriber::registry()
        .with(fmt)
        .with(layer.with_filter(spans))
        .init();
    tracing::info!(endpoint = %endpoint, "exporting spans as OTLP/HTTP JSON");
    Some(exporter)
}
