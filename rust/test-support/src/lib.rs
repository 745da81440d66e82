//! The harness shared by the workspace's tests and examples (not published): the project's
//! Consul dev server (through `rust/fixtures/consul-dev-server.mjs`), a real
//! `worker-resolver serve` process, a real Consul agent, and a small HTTP helper; with the
//! `cluster` feature, the DataFusion side of the loopback cluster ([`cluster`]). Every child
//! process is killed when its handle drops.

#[cfg(feature = "cluster")]
pub mod cluster;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The repository root (`rust/<crate>/../..`).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(|p| p.parent())
        .expect("repo root")
        .to_path_buf()
}

/// The built CLI; fails the test (never skips it) when the TypeScript build is missing.
pub fn cli_js() -> PathBuf {
    let p = repo_root().join("dist/cli/main.js");
    assert!(
        p.exists() && repo_root().join("dist/testing/index.js").exists(),
        "{} is missing: run `npm ci && npm run build` in {} (scripts/test-rust.sh does)",
        p.display(),
        repo_root().display()
    );
    p
}

/// Polls `check` every 25 ms until it returns true; panics with `what` after `guard`
/// (a hang guard, not a timing assertion: the condition is what is asserted).
pub async fn wait_until<F, Fut>(what: &str, guard: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + guard;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One HTTP request; returns status and body text.
pub async fn http(method: &str, url: &str, body: Option<String>) -> Result<(u16, String), String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| format!("{method} {url}: timed out"))?
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// A PUT that must answer 200.
pub async fn put_ok(url: &str, body: Option<String>) {
    let (status, text) = http("PUT", url, body).await.expect("PUT");
    assert_eq!(status, 200, "PUT {url}: {text}");
}

/// Collects a child's output lines, for waiting on a log line and for failure messages.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Appends a line.
    pub fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    /// Appends every line of `stream` as it arrives (in a task of its own).
    pub fn follow(&self, stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
        let lines = self.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stream).lines();
            while let Ok(Some(line)) = r.next_line().await {
                lines.0.lock().unwrap().push(line);
            }
        });
    }

    /// All lines so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// The first line containing `needle`.
    pub fn find(&self, needle: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// The project's Consul dev server in a node process.
pub struct DevConsul {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
    /// e.g. `http://127.0.0.1:34567`.
    pub http_addr: String,
    /// `host:port` of its DNS interface (fixture only).
    pub dns_addr: Option<String>,
}

impl DevConsul {
    /// Starts `worker-resolver dev-server --json` when the CLI has that command, else
    /// `rust/fixtures/consul-dev-server.mjs` (the same `ConsulDevServer` from dist/testing).
    pub async fn start() -> DevConsul {
        let has_command = repo_root().join("dist/cli/dev-server.js").exists();
        DevConsul::spawn(!has_command).await
    }

    /// Starts the fixture, which has DNS and a control channel ([`DevConsul::command`]).
    pub async fn start_controllable() -> DevConsul {
        DevConsul::spawn(true).await
    }

    async fn spawn(fixture: bool) -> DevConsul {
        let cli = cli_js();
        let mut cmd = Command::new("node");
        if fixture {
            cmd.arg(repo_root().join("rust/fixtures/consul-dev-server.mjs"));
        } else {
            cmd.arg(cli).args([
                "dev-server",
                "--listen",
                "127.0.0.1:0",
                "--no-dns",
                "--json",
            ]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), out.next_line())
            .await
            .expect("dev server start")
            .expect("read")
            .expect("a line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
        let http_addr = v["http"]
            .as_str()
            .or(v["httpAddr"].as_str())
            .expect("http address")
            .to_owned();
        DevConsul {
            child,
            stdin: Some(stdin),
            stdout: Some(out),
            http_addr,
            dns_addr: v["dnsAddr"].as_str().map(str::to_owned),
        }
    }

    /// Sends a control command to the fixture (`outage`, `recover`) and waits for its ack.
    pub async fn command(&mut self, cmd: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let out = self.stdout.as_mut().expect("stdout");
        let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
            .await
            .expect("ack")
            .unwrap()
            .expect("a line");
        assert!(line.contains(&format!("\"ok\":\"{cmd}\"")), "{line}");
    }

    /// Registers a service instance with an always-passing TTL check (for client tests that
    /// have no real worker behind the URL).
    pub async fn register_static(&self, service: &str, id: &str, port: u16) {
        let body = serde_json::json!({
            "Name": service, "ID": id, "Address": "127.0.0.1", "Port": port,
            "Check": { "CheckID": format!("check-{id}"), "TTL": "1h", "Status": "passing" }
        });
        put_ok(
            &format!("{}/v1/agent/service/register", self.http_addr),
            Some(body.to_string()),
        )
        .await;
    }

    /// Deregisters a service instance.
    pub async fn deregister(&self, id: &str) {
        put_ok(
            &format!("{}/v1/agent/service/deregister/{id}", self.http_addr),
            None,
        )
        .await;
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A real `worker-resolver serve` process.
pub struct SidecarProcess {
    child: Child,
    /// Its stderr (JSON log lines).
    pub log: Lines,
    /// e.g. `http://127.0.0.1:9464`.
    pub url: String,
    /// Its port.
    pub port: u16,
}

impl SidecarProcess {
    /// Starts `worker-resolver serve --service SERVICE --consul ADDR --listen 127.0.0.1:PORT`
    /// with publishes undamped, and waits for its "sidecar listening" line. `port` 0 picks one
    /// with [`free_ports`] (so a test can restart the sidecar on it), again if another process
    /// took it first (at most three times).
    pub async fn start(consul: &str, service: &str, port: u16, extra: &[&str]) -> SidecarProcess {
        if port != 0 {
            return Self::try_start(consul, service, port, extra)
                .await
                .unwrap_or_else(|log| panic!("the sidecar did not start on port {port}:\n{log}"));
        }
        on_fresh_ports(
            "the sidecar",
            |log| log.contains("ERR_LISTEN"),
            || Self::try_start(consul, service, free_ports(1)[0], extra),
        )
        .await
    }

    /// One start on `port`: Ok once it listens, Err(its log) when it exits first.
    async fn try_start(
        consul: &str,
        service: &str,
        port: u16,
        extra: &[&str],
    ) -> Result<SidecarProcess, String> {
        let mut child = Command::new("node")
            .arg(cli_js())
            .args([
                "serve",
                "--service",
                service,
                "--consul",
                consul,
                "--min-publish-interval",
                "0ms",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env_remove("CONSUL_HTTP_TOKEN")
            .env("OTEL_SDK_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn worker-resolver serve");
        let log = Lines::default();
        log.follow(child.stderr.take().unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let line = loop {
            if let Some(line) = log.find("\"msg\":\"sidecar listening\"") {
                break line;
            }
            if let Some(report) = exit_report(&mut child, &log).await {
                return Err(report);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no \"sidecar listening\" line after 60 s:\n{}",
                log.text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        let url = v["url"].as_str().unwrap().to_owned();
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap();
        Ok(SidecarProcess {
            child,
            log,
            url,
            port,
        })
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`; 32768 if unreadable).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// `count` distinct loopback ports, each free for TCP and for UDP (Serf listens on both).
///
/// They are picked at random *below* the kernel's ephemeral range: no outgoing connection (ours
/// or another process's) can take one, nor can a client retrying a stopped listener connect to
/// itself on it, while a test restarts a listener on the same port. Every socket stays bound
/// until all are picked, so no port is given twice; they are released on return. Another test
/// picking the same port before the caller binds it is still possible: callers that start an
/// agent retry on a clash ([`RealConsul::start`], [`SidecarProcess::start`]).
pub fn free_ports(count: usize) -> Vec<u16> {
    let floor = ephemeral_floor();
    let below = floor > 11_000;
    let mut held = Vec::new();
    let mut ports = Vec::new();
    let mut tries = 0;
    while ports.len() < count {
        tries += 1;
        let wanted = if below && tries < 10_000 {
            rand::random_range(10_000..floor)
        } else {
            0
        };
        let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", wanted)) else {
            continue;
        };
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push((tcp, udp));
        }
    }
    ports
}

/// The real Consul agent binary: `$WORKER_RESOLVER_CONSUL_BIN`, else the cache that
/// `scripts/consul-binary.sh` fills. Fails (never skips) when there is none.
pub fn consul_binary() -> PathBuf {
    match std::env::var("WORKER_RESOLVER_CONSUL_BIN") {
        Ok(p) if !p.is_empty() => return PathBuf::from(p),
        _ => {}
    }
    let home = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let p = home.join("worker-resolver/consul/v1.16.1/consul");
    assert!(
        p.exists(),
        "no Consul binary at {}: run scripts/consul-binary.sh or set WORKER_RESOLVER_CONSUL_BIN (scripts/test-rust.sh does)",
        p.display()
    );
    p
}

/// A real `consul agent -dev` on loopback ports, DNS and gRPC off.
pub struct RealConsul {
    child: Child,
    /// Its log.
    pub log: Lines,
    /// e.g. `http://127.0.0.1:34567`.
    pub http_addr: String,
}

impl RealConsul {
    /// Starts it and waits until it has a leader. Picked ports can be taken by another
    /// process before the agent binds them; an agent that exits during start-up with a port
    /// clash is started again on fresh ports, at most three times in all.
    pub async fn start() -> RealConsul {
        on_fresh_ports("consul", is_port_clash, Self::try_start).await
    }

    /// One start: Ok once it has a leader, Err(its log) when it exits first or after 60 s.
    async fn try_start() -> Result<RealConsul, String> {
        let [http, lan, wan, server] = free_ports(4)[..] else {
            unreachable!("free_ports(4) gives four ports")
        };
        let ports = format!(
            "ports {{ http = {http}, https = -1, dns = -1, grpc = -1, grpc_tls = -1, serf_lan = {lan}, serf_wan = {wan}, server = {server} }}"
        );
        let mut child = Command::new(consul_binary())
            .args([
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
                "-advertise",
                "127.0.0.1",
            ])
            .arg(format!("-node=wr-rust-{}", rand::random::<u32>()))
            .arg(format!("-hcl={ports}"))
            .arg("-hcl=disable_update_check = true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn consul");
        let log = Lines::default();
        log.follow(child.stdout.take().unwrap());
        log.follow(child.stderr.take().unwrap());
        let http_addr = format!("http://127.0.0.1:{http}");
        let leader_url = format!("{http_addr}/v1/status/leader");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self::http("GET", &leader_url, None).await;
            if matches!(&answer, Ok((200, body)) if body.trim().len() > 2) {
                return Ok(RealConsul {
                    child,
                    log,
                    http_addr,
                });
            }
            if let Some(report) = exit_report(&mut child, &log).await {
                return Err(report);
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!("(no leader after 60 s)\n{}", log.text()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Runs `start` (one start-up on freshly picked ports; `Err` carries the process's log) until it
/// succeeds, at most three times: a start-up whose log shows a port clash (`clash`) is tried
/// again on new ports, any other failure panics with the log.
async fn on_fresh_ports<T, F>(
    what: &str,
    clash: impl Fn(&str) -> bool,
    mut start: impl FnMut() -> F,
) -> T
where
    F: Future<Output = Result<T, String>>,
{
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        match start().await {
            Ok(started) => return started,
            Err(log) if attempt < ATTEMPTS && clash(&log) => {
                eprintln!("{what}: a picked port was taken (attempt {attempt}); trying new ports");
            }
            Err(log) => panic!("{what} did not start:\n{log}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// If `child` has exited: that, and its log so far (after a moment for the log readers to take
/// its last lines).
async fn exit_report(child: &mut Child, log: &Lines) -> Option<String> {
    let status = child.try_wait().ok()??;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Some(format!("(exited: {status})\n{}", log.text()))
}

/// Whether an agent's start-up log shows it lost a port: taken by another process, or the
/// same port given to two of its listeners.
fn is_port_clash(log: &str) -> bool {
    log.contains("address already in use") || log.contains("already configured for")
}
