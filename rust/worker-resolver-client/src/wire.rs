//! Decoding of the sidecar's `/v1/workers` answers (docs/design.md §8).

use crate::error::Error;
use crate::snapshot::{Source, Worker};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAnswer {
    index: u64,
    source: String,
    stale: bool,
    #[serde(default)]
    updated_at: Option<String>,
    workers: Vec<WireWorker>,
}

#[derive(Deserialize)]
struct WireWorker {
    url: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    error: String,
}

/// A worker URL the sidecar sent that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("worker url {url:?}")]
struct BadWorkerUrl {
    url: String,
    #[source]
    source: url::ParseError,
}

/// A decoded answer of the sidecar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// A worker list (index > 0).
    Workers {
        index: u64,
        source: Source,
        stale: bool,
        updated_at: Option<String>,
        workers: Vec<Worker>,
    },
    /// The sidecar has no snapshot yet (503, or a 200 with index 0): not an error, not "no workers".
    NotYetKnown { retry_after: Option<Duration> },
}

/// Decodes an answer from its status, `Retry-After` header and body.
pub(crate) fn decode(status: u16, retry_after: Option<&str>, body: &[u8]) -> Result<Answer, Error> {
    match status {
        200 => {}
        503 => {
            return Ok(Answer::NotYetKnown {
                retry_after: retry_after.and_then(parse_retry_after),
            });
        }
        _ => {
            let message = serde_json::from_slice::<WireError>(body)
                .ok()
                .map(|e| e.error)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
                });
            return Err(Error::UnexpectedStatus { status, message });
        }
    }
    let wire: WireAnswer = serde_json::from_slice(body).map_err(Error::decode)?;
    if wire.index == 0 {
        return Ok(Answer::NotYetKnown { retry_after: None });
    }
    let mut workers = Vec::with_capacity(wire.workers.len());
    for w in wire.workers {
        let url = Url::parse(&w.url).map_err(|source| {
            Error::decode(BadWorkerUrl {
                url: w.url.clone(),
                source,
            })
        })?;
        workers.push(Worker {
            url,
            id: w.id,
            node: w.node,
            tags: w.tags,
            meta: w.meta,
            status: w.status,
        });
    }
    // The sidecar sorts by URL already; sorting again makes equal sets compare equal whatever it does.
    workers.sort_by(|a, b| {
        a.url
            .as_str()
            .cmp(b.url.as_str())
            .then_with(|| a.id.cmp(&b.id))
    });
    workers.dedup_by(|a, b| a.url == b.url);
    Ok(Answer::Workers {
        index: wire.index,
        source: Source::from_wire(&wire.source),
        stale: wire.stale,
        updated_at: wire.updated_at,
        workers,
    })
}

/// `Retry-After` as delay-seconds (the HTTP-date form is not used by the sidecar and is ignored).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"index":5,"source":"consul","stale":false,"updatedAt":"2026-01-01T00:00:00.000Z",
      "workers":[{"url":"http://127.0.0.1:9002/","id":"w2","node":"n","tags":["a"],"meta":{"k":"v"},"status":"passing"},
                 {"url":"http://127.0.0.1:9001/","id":"w1","node":"n","tags":[],"meta":{},"status":"passing"}]}"#;

    #[test]
    fn decodes_a_worker_list_sorted_by_url() {
        let Answer::Workers {
            index,
            source,
            stale,
            updated_at,
            workers,
        } = decode(200, None, BODY.as_bytes()).unwrap()
        else {
            panic!("expected workers");
        };
        assert_eq!((index, source, stale), (5, Source::Consul, false));
        assert_eq!(updated_at.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        let ids: Vec<_> = workers.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["w1", "w2"]);
        assert_eq!(workers[1].meta.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn index_zero_and_503_mean_not_known_yet() {
        let body = br#"{"index":0,"source":"consul","stale":false,"updatedAt":null,"workers":[]}"#;
        assert_eq!(
            decode(200, None, body).unwrap(),
            Answer::NotYetKnown { retry_after: None }
        );
        assert_eq!(
            decode(503, Some("2"), br#"{"error":"no snapshot yet"}"#).unwrap(),
            Answer::NotYetKnown {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            decode(503, Some("soon"), b"").unwrap(),
            Answer::NotYetKnown { retry_after: None }
        );
    }

    #[test]
    fn other_statuses_and_bad_bodies_are_errors() {
        match decode(
            400,
            None,
            br#"{"error":"index must be a non-negative integer","code":"ERR_BAD_REQUEST"}"#,
        ) {
            Err(Error::UnexpectedStatus {
                status: 400,
                message,
            }) => {
                assert_eq!(message, "index must be a non-negative integer")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(200, None, b"{"), Err(Error::Decode(_))));
        assert!(matches!(
            decode(
                200,
                None,
                br#"{"index":1,"source":"dns","stale":true,"workers":[{"url":"::"}]}"#
            ),
            Err(Error::Decode(_))
        ));
    }
}
