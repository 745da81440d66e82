//! The coordinator binary as an operator runs it: flags, `/healthz` and `/metrics` on its port,
//! SIGTERM → exit 0 within a few seconds (also with an OTLP collector that does not exist), and
//! its spans exported to a collector, the sidecar request carrying the poll span's context.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use worker_resolver_test_support::http;

const GUARD: Duration = Duration::from_secs(60);

fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    let data = std::env::temp_dir().join(format!("wr-coordinator-test-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker-resolver-coordinator"))
        .args(["--sidecar", &format!("http://127.0.0.1:{}", dead_port())])
        .args(["--listen", "127.0.0.1:0", "--interval", "200ms"])
        .arg("--data")
        .arg(&data)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", dead_port()),
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the coordinator");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The log line "coordinator started" names the bound address.
    let listen = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("coordinator started") {
                let at = line.find("listen=").expect("listen field") + "listen=".len();
                return line[at..].split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the coordinator exited before it started");
    })
    .await
    .expect("the coordinator starts");
    let rest = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        all
    });

    let (status, body) = http("GET", &format!("http://{listen}/healthz"), None)
        .await
        .unwrap();
    assert_eq!(status, 503, "no worker list yet: {body}");
    assert!(body.contains("\"ready\":false"), "{body}");
    let (status, metrics) = http("GET", &format!("http://{listen}/metrics"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    for name in [
        "worker_resolver_client_connected 0",
        "worker_resolver_client_snapshot_version 0",
        "# TYPE worker_resolver_coordinator_queries_total counter",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(GUARD, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let logs = rest.await.unwrap().join("\n");
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}; logs:\n{logs}");
    assert!(logs.contains("stopping"), "{logs}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Serves one worker list, then holds every further poll; records each request's `traceparent`.
async fn fake_sidecar() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&s);
            tokio::spawn(async move {
                loop {
                    let Some(head) = read_head(&mut sock).await else {
                        return;
                    };
                    let tp = head
                        .lines()
                        .find_map(|l| l.strip_prefix("traceparent: "))
                        .unwrap_or_default()
                        .to_owned();
                    let first = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(tp);
                        seen.len() == 1
                    };
                    if !first {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    let body = r#"{"index":1,"source":"consul","stale":false,"workers":[{"url":"http://127.0.0.1:1/","id":"w1","node":"n","tags":[],"meta":{},"status":"passing"}]}"#;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// Reads one request head (up to the blank line); `None` when the peer closed.
async fn read_head(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// An OTLP/HTTP collector: records every POSTed body, answers 200.
async fn fake_collector() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let b = Arc::clone(&bodies);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let bodies = Arc::clone(&b);
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut sock).await {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if sock.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    assert!(head.starts_with("POST /v1/traces "), "{head}");
                    bodies
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                    if sock.write_all(ok.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_spans_with_the_sidecar_request_as_the_poll_spans_child() {
    let (sidecar, traceparents) = fake_sidecar().await;
    let (collector, bodies) = fake_collector().await;
    let data = std::env::temp_dir().join(format!("wr-coordinator-otlp-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker-resolver-coordinator"))
        .args(["--sidecar", &sidecar, "--listen", "127.0.0.1:0"])
        .args(["--interval", "200ms", "--wait", "30s"])
        .arg("--data")
        .arg(&data)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the coordinator");
    // The first poll (answered) ends its span; the exporter sends it within seconds. Its ids
    // must be those of the traceparent the sidecar received: the sidecar's span is its child.
    let found = tokio::time::timeout(GUARD, async {
        loop {
            let first_tp = traceparents.lock().unwrap().first().cloned();
            if let Some(tp) = first_tp {
                let parts: Vec<&str> = tp.split('-').collect();
                assert_eq!(parts.len(), 4, "a W3C traceparent: {tp:?}");
                for body in bodies.lock().unwrap().iter() {
                    let v: serde_json::Value = serde_json::from_str(body).expect("OTLP JSON");
                    let spans = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
                    for s in spans.as_array().expect("spans") {
                        if s["name"] == "worker_resolver.poll"
                            && s["traceId"] == parts[1]
                            && s["spanId"] == parts[2]
                        {
                            return s.clone();
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the poll span reaches the collector");
    assert_eq!(found["kind"], 3, "a client span: {found}");
    let pid = child.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let exit = tokio::time::timeout(GUARD, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    let _ = std::fs::remove_dir_all(&data);
}
