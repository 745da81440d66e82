//! The client against a scripted HTTP server, for answers the real sidecar gives only in
//! states that are hard to reach on purpose: `503` + `Retry-After` before a first snapshot,
//! `503` after one (never empties the list), a `400`, and a connection cut.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use worker_resolver_client::{ClientConfig, Error, SidecarWorkerResolver};

const GUARD: Duration = Duration::from_secs(30);

enum Reply {
    Http(&'static str, String),
    Cut,
}

fn workers(index: u64, ports: &[u16]) -> Reply {
    let ws: Vec<_> = ports
        .iter()
        .map(|p| serde_json::json!({"url": format!("http://127.0.0.1:{p}/"), "id": format!("w{p}"), "node": "n", "tags": [], "meta": {}, "status": "passing"}))
        .collect();
    let body = serde_json::json!({"index": index, "source": "consul", "stale": false, "updatedAt": "2026-01-01T00:00:00Z", "workers": ws});
    Reply::Http("200 OK", body.to_string())
}

/// Serves the scripted replies in order (then holds further requests open) and records each
/// request's head.
async fn scripted(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let seen = Arc::clone(&s);
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                loop {
                    let mut buf = vec![0u8; 4096];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    let next = queue.lock().unwrap().pop_front();
                    match next {
                        None => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Some(Reply::Cut) => return,
                        Some(Reply::Http(status, body)) => {
                            let extra = if status.starts_with("503") {
                                "Retry-After: 0\r\n"
                            } else {
                                ""
                            };
                            let head = format!(
                                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
                                body.len()
                            );
                            if sock.write_all(head.as_bytes()).await.is_err()
                                || sock.write_all(body.as_bytes()).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

fn config(url: &str) -> ClientConfig {
    ClientConfig::builder(url)
        .wait(Duration::from_secs(10))
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn not_known_yet_then_a_list_and_503_or_errors_never_empty_it() {
    let not_ready = || {
        Reply::Http(
            "503 Service Unavailable",
            r#"{"error":"no worker snapshot yet","code":"ERR_NOT_READY"}"#.into(),
        )
    };
    let (url, seen) = scripted(vec![
        not_ready(),
        not_ready(),
        workers(1, &[9001, 9002]),
        not_ready(),
        Reply::Http(
            "400 Bad Request",
            r#"{"error":"wait must be a duration","code":"ERR_BAD_REQUEST"}"#.into(),
        ),
        Reply::Cut,
        workers(2, &[9001, 9002, 9003]),
    ])
    .await;
    let client = SidecarWorkerResolver::start(config(&url)).unwrap();
    let first = client.ready(GUARD).await.unwrap();
    assert_eq!(first.urls.len(), 2);
    assert_eq!(first.version, 1);
    let mut rx = client.subscribe();
    let next = tokio::time::timeout(GUARD, rx.wait_for(|s| s.urls.len() == 3))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(
        next.version, 2,
        "the 503, the 400 and the cut published nothing"
    );
    let status = client.status();
    assert!(
        matches!(
            status.last_error.as_deref(),
            Some(Error::UnexpectedStatus { status: 400, .. }) | Some(Error::Unreachable(_))
        ),
        "{status:?}"
    );
    assert_eq!(status.consecutive_failures, 0);
    client.close().await;

    let heads = seen.lock().unwrap().clone();
    assert!(heads.len() >= 7, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /v1/workers?index=0&wait=10000ms HTTP/1.1"),
        "{}",
        heads[0]
    );
    assert!(
        heads[3].starts_with("GET /v1/workers?index=1&wait=10000ms "),
        "{}",
        heads[3]
    );
    for h in &heads {
        let tp = h
            .lines()
            .find_map(|l| l.strip_prefix("traceparent: "))
            .expect("traceparent header");
        let parts: Vec<_> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01"),
            "{tp}"
        );
    }
}

#[tokio::test]
async fn a_backwards_index_resets_to_zero() {
    let (url, seen) = scripted(vec![
        workers(7, &[9001]),
        workers(2, &[9001, 9002]),
        workers(3, &[9001, 9002]),
    ])
    .await;
    let client = SidecarWorkerResolver::start(config(&url)).unwrap();
    let mut rx = client.subscribe();
    let s = tokio::time::timeout(GUARD, rx.wait_for(|s| s.urls.len() == 2))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(s.sidecar_index, 2);
    let mut heads = Vec::new();
    tokio::time::timeout(GUARD, async {
        loop {
            heads = seen.lock().unwrap().clone();
            if heads.len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let indexes: Vec<_> = heads
        .iter()
        .map(|h| {
            h.split("index=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(indexes, ["0", "7", "0", "3"]);
    client.close().await;
}

#[tokio::test]
async fn dropping_the_client_stops_its_task_and_the_reader_keeps_the_list() {
    let (url, seen) = scripted(vec![workers(1, &[9001])]).await;
    let client = SidecarWorkerResolver::start(config(&url)).unwrap();
    let reader = client.reader();
    client.ready(GUARD).await.unwrap();
    // The next long poll is outstanding (held by the script) before the drop.
    tokio::time::timeout(GUARD, async {
        while seen.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    drop(client);
    assert_eq!(reader.urls().len(), 1);
    let err = reader.ready(Duration::from_secs(1)).await;
    assert!(
        err.is_ok(),
        "an already-known snapshot is ready even after close"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "no request after drop");
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let cfg = config("http://127.0.0.1:1");
    assert!(matches!(
        SidecarWorkerResolver::start(cfg),
        Err(Error::NoRuntime)
    ));
}

#[tokio::test]
async fn a_fixed_reader_serves_a_sorted_static_list_and_is_never_stale() {
    let u = |p: u16| worker_resolver_client::Url::parse(&format!("http://127.0.0.1:{p}/")).unwrap();
    let reader = worker_resolver_client::WorkerReader::fixed([u(9002), u(9001), u(9002)]);
    let s = reader.ready(Duration::from_millis(1)).await.unwrap();
    assert_eq!(&s.urls[..], &[u(9001), u(9002)]);
    assert_eq!(s.source, worker_resolver_client::Source::Static);
    assert!(!reader.status().is_stale());
}

#[tokio::test]
async fn after_a_failed_request_the_next_one_resyncs_from_index_zero() {
    let (url, seen) = scripted(vec![workers(4, &[9001]), Reply::Cut, workers(4, &[9001])]).await;
    let client = SidecarWorkerResolver::start(config(&url)).unwrap();
    client.ready(GUARD).await.unwrap();
    tokio::time::timeout(GUARD, async {
        while seen.lock().unwrap().len() < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let indexes: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|h| {
            h.split("index=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(indexes, ["0", "4", "0", "4"]);
    assert_eq!(
        client.snapshot().version,
        1,
        "the same list after the resync publishes nothing"
    );
    client.close().await;
}

/// Waits until the scripted server has seen `n` requests.
async fn requests_seen(seen: &Arc<Mutex<Vec<String>>>, n: usize) {
    tokio::time::timeout(GUARD, async {
        while seen.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the requests arrive");
}

#[tokio::test]
async fn the_resolver_handed_to_datafusion_owns_its_refresher() {
    // Issue 20.1: a clone (what `with_distributed_worker_resolver` keeps) outlives the value
    // the application started, and keeps refreshing.
    let (url, seen) = scripted(vec![workers(1, &[9001])]).await;
    let started = SidecarWorkerResolver::start(config(&url)).unwrap();
    let handed = started.clone();
    started.ready(GUARD).await.unwrap();
    drop(started);
    requests_seen(&seen, 2).await;
    let status = handed.status();
    assert!(!status.closed, "{status:?}");
    assert_eq!(handed.reader().checked_urls().unwrap().len(), 1);
    handed.close().await;
}

#[tokio::test]
async fn a_reader_left_without_its_resolver_says_so_loudly() {
    // Issue 20.1: with only a non-owning reader left, the list is frozen and every read says it.
    let (url, seen) = scripted(vec![workers(1, &[9001])]).await;
    let resolver = SidecarWorkerResolver::start(config(&url)).unwrap();
    let reader = resolver.reader();
    resolver.ready(GUARD).await.unwrap();
    requests_seen(&seen, 2).await;
    drop(resolver);
    let err = reader.checked_urls().unwrap_err();
    assert_eq!(err.code(), "ERR_CLOSED", "{err}");
    let status = reader.status();
    assert!(status.closed && status.is_stale(), "{status:?}");
    assert_eq!(reader.urls().len(), 1, "the last list stays readable");
}

#[tokio::test]
async fn a_poll_held_on_a_live_connection_is_contact() {
    // Issue 20.3: stale_after far below the wait; the sidecar holds the second poll (nothing
    // new). A held poll is contact: not stale, connected. Old code: stale after 200 ms.
    let (url, seen) = scripted(vec![workers(1, &[9001])]).await;
    let cfg = ClientConfig::builder(url)
        .wait(Duration::from_secs(30))
        .stale_after(Duration::from_millis(200))
        .build()
        .unwrap();
    let resolver = SidecarWorkerResolver::start(cfg).unwrap();
    resolver.ready(GUARD).await.unwrap();
    requests_seen(&seen, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = resolver.status();
    assert!(status.connected, "{status:?}");
    assert_eq!(
        status.since_last_contact,
        Some(Duration::ZERO),
        "{status:?}"
    );
    assert!(!status.client_stale && !status.is_stale(), "{status:?}");
    assert!(status.since >= Duration::from_millis(800), "{status:?}");
    resolver.close().await;
}

#[tokio::test]
async fn without_a_connection_the_client_goes_stale_and_says_why() {
    // Issue 20.3: nothing listens at the sidecar's address: not connected, stale once
    // `stale_after` has passed, and the last error says what happened, and since when.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let cfg = ClientConfig::builder(url)
        .wait(Duration::from_secs(30))
        .stale_after(Duration::from_millis(100))
        .build()
        .unwrap();
    let resolver = SidecarWorkerResolver::start(cfg).unwrap();
    let reader = resolver.reader();
    tokio::time::timeout(GUARD, async {
        loop {
            let s = reader.status();
            if s.client_stale && s.consecutive_failures >= 2 {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map(|s| {
        assert!(!s.connected, "{s:?}");
        assert!(s.last_error_age.is_some(), "{s:?}");
        let err = s.last_error.expect("an error");
        assert_eq!(err.code(), "ERR_SIDECAR_UNREACHABLE");
        assert!(
            std::error::Error::source(err.as_ref()).is_some(),
            "the error keeps its source: {err}"
        );
    })
    .expect("stale without a sidecar");
    resolver.close().await;
}

#[tokio::test]
async fn close_is_seen_by_subscribers_while_readers_exist() {
    // Issue 20.5: after close(), a watcher's changed() resolves (closed) although a reader
    // (and the resolver itself) still exist. Old code: it never resolved.
    let (url, _seen) = scripted(vec![workers(1, &[9001])]).await;
    let resolver = SidecarWorkerResolver::start(config(&url)).unwrap();
    let _reader = resolver.reader();
    resolver.ready(GUARD).await.unwrap();
    let mut rx = resolver.subscribe();
    let watcher = tokio::spawn(async move { rx.changed().await.is_err() });
    resolver.close().await;
    let closed = tokio::time::timeout(GUARD, watcher)
        .await
        .expect("changed() resolves after close")
        .unwrap();
    assert!(closed, "changed() reports the closed channel");
    assert!(
        resolver.subscribe().changed().await.is_err(),
        "a late subscriber sees it at once"
    );
}

#[tokio::test]
async fn refused_connections_are_retried_within_a_second() {
    // Issue 20.6: with a 60 s backoff, a refused connection (nothing listens: the sidecar is
    // restarting) is still retried within a second, so five attempts take a few seconds, far
    // below the guard. Old code: up to a minute per retry (passing by chance < 0.3 %).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let cfg = ClientConfig::builder(url)
        .wait(Duration::from_secs(30))
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .build()
        .unwrap();
    let resolver = SidecarWorkerResolver::start(cfg).unwrap();
    let reader = resolver.reader();
    tokio::time::timeout(GUARD, async {
        while reader.status().consecutive_failures < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("five refused attempts within the guard");
    resolver.close().await;
}
