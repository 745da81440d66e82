//! The worker's HTTP health endpoint, probed by the Consul HTTP check: `200` while serving,
//! `503` once draining (so even an agent that ignored maintenance mode stops routing to it).
//! A minimal HTTP/1.1 responder: one answer per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    draining: Arc<AtomicBool>,
    in_flight: Arc<crate::inflight::InFlight>,
    stop: CancellationToken,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        let draining = Arc::clone(&draining);
        let in_flight = Arc::clone(&in_flight);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => n += k,
                }
            }
            let (status, body) = if draining.load(Ordering::Acquire) {
                (
                    "503 Service Unavailable",
                    format!(
                        "{{\"status\":\"draining\",\"in_flight\":{}}}\n",
                        in_flight.current()
                    ),
                )
            } else {
                (
                    "200 OK",
                    format!(
                        "{{\"status\":\"serving\",\"in_flight\":{}}}\n",
                        in_flight.current()
                    ),
                )
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
