//! The client against the REAL TypeScript sidecar (`node dist/cli/main.js serve`) in front of
//! the project's Consul dev server: ready, change propagation, sidecar killed (last good list
//! kept, staleness shown), sidecar restarted (its index restarts lower; the client resyncs).

use worker_resolver_test_support as support;

use std::sync::Arc;
use std::time::Duration;
use support::{DevConsul, SidecarProcess, wait_until};
use worker_resolver_client::{ClientConfig, Error, SidecarWorkerResolver, Source, WorkerSnapshot};

const GUARD: Duration = Duration::from_secs(60);

fn ports(s: &WorkerSnapshot) -> Vec<u16> {
    s.urls.iter().map(|u| u.port().unwrap()).collect()
}

/// Waits until the client's published snapshot has exactly these worker ports.
async fn wait_for_ports(client: &SidecarWorkerResolver, want: &[u16]) -> Arc<WorkerSnapshot> {
    let mut rx = client.subscribe();
    let want = want.to_vec();
    let got = tokio::time::timeout(GUARD, rx.wait_for(|s| ports(s) == want))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "snapshot never had ports {want:?}; last: {:?}",
                ports(&client.snapshot())
            )
        })
        .expect("watch open");
    Arc::clone(&got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_real_sidecar_through_changes_a_kill_and_a_restart() {
    let consul = DevConsul::start().await;
    consul.register_static("worker", "w1", 9101).await;
    consul.register_static("worker", "w2", 9102).await;
    let mut sidecar = SidecarProcess::start(&consul.http_addr, "worker", 0, &[]).await;

    let cfg = ClientConfig::builder(sidecar.url.clone())
        .wait(Duration::from_secs(30))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .stale_after(Duration::from_millis(500))
        .build()
        .unwrap();
    let client = SidecarWorkerResolver::start(cfg).unwrap();

    // ready: the first snapshot, from Consul, fresh.
    let first = client.ready(GUARD).await.expect("ready");
    assert_eq!(ports(&first), [9101, 9102]);
    assert_eq!(first.source, Source::Consul);
    assert!(!first.stale);
    assert_eq!(first.version, 1);
    assert!(
        first
            .workers
            .iter()
            .all(|w| w.status == "passing" && !w.id.is_empty())
    );
    let status = client.status();
    assert!(!status.is_stale(), "{status:?}");
    assert_eq!(status.consecutive_failures, 0);

    // a change propagates through the one outstanding long poll, both ways.
    consul.register_static("worker", "w3", 9103).await;
    let added = wait_for_ports(&client, &[9101, 9102, 9103]).await;
    assert!(added.version > first.version && added.sidecar_index > first.sidecar_index);
    consul.deregister("w1").await;
    let removed = wait_for_ports(&client, &[9102, 9103]).await;
    let index_before_kill = removed.sidecar_index;
    assert!(index_before_kill >= 3, "{index_before_kill}");

    // sidecar killed: the last good list stays, the client reports itself stale.
    let port = sidecar.port;
    sidecar.kill().await;
    wait_until("the client to call itself stale", GUARD, || {
        let s = client.status();
        async move { s.client_stale && s.consecutive_failures >= 2 }
    })
    .await;
    let status = client.status();
    assert!(status.is_stale());
    assert_eq!(ports(&status.snapshot), [9102, 9103], "last good list kept");
    assert_eq!(
        status.snapshot.version, removed.version,
        "nothing published while down"
    );
    assert!(
        matches!(status.last_error.as_deref(), Some(Error::Unreachable(_))),
        "{:?}",
        status.last_error
    );
    assert_eq!(client.urls().len(), 2);

    // sidecar restarted on the same port: its versions begin again at 1, below the client's
    // index; the client resets to 0, resyncs, and follows the new process.
    let sidecar2 = SidecarProcess::start(&consul.http_addr, "worker", port, &[]).await;
    wait_until("the client to hear from the new sidecar", GUARD, || {
        let s = client.status();
        async move { !s.client_stale && s.consecutive_failures == 0 }
    })
    .await;
    consul.register_static("worker", "w4", 9104).await;
    let after = wait_for_ports(&client, &[9102, 9103, 9104]).await;
    assert!(
        after.sidecar_index < index_before_kill,
        "the new sidecar's index ({}) restarted below the old one ({index_before_kill})",
        after.sidecar_index
    );
    assert!(after.version > removed.version);
    assert!(!client.status().is_stale());

    client.close().await;
    // After close the list is still readable, and nothing polls any more.
    assert_eq!(ports(&client.snapshot()), [9102, 9103, 9104]);
    drop(sidecar2);
    consul.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_times_out_while_the_sidecar_has_no_snapshot() {
    // Consul on a port where nothing listens: the sidecar never gets a first snapshot.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let sidecar = SidecarProcess::start(&dead_addr, "worker", 0, &[]).await;
    let cfg = ClientConfig::builder(sidecar.url.clone())
        .wait(Duration::from_secs(30))
        .build()
        .unwrap();
    let client = SidecarWorkerResolver::start(cfg).unwrap();
    let err = client.ready(Duration::from_millis(1500)).await.unwrap_err();
    assert!(matches!(err, Error::ReadyTimeout { .. }), "{err}");
    assert_eq!(err.code(), "ERR_READY_TIMEOUT");
    let s = client.snapshot();
    assert!(!s.is_known(), "not known yet is not an empty answer: {s:?}");
    assert_eq!(s.version, 0);
    // The sidecar did answer or hold the poll: it was never an error of the client.
    assert!(
        client.status().last_error.is_none(),
        "{:?}",
        client.status().last_error
    );
    client.close().await;
}
