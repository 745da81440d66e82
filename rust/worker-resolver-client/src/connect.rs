//! The client's connector: hyper-util's `HttpConnector`, counting the open connections to the
//! sidecar, so that a long poll held on a live connection counts as contact (`Status::connected`,
//! staleness) although no answer has completed yet.

use crate::reader::Shared;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// An `HttpConnector` whose connections report to [`Shared`] when they open and close.
#[derive(Clone)]
pub(crate) struct TrackingConnector {
    inner: HttpConnector,
    shared: Arc<Shared>,
}

impl TrackingConnector {
    pub(crate) fn new(inner: HttpConnector, shared: Arc<Shared>) -> Self {
        TrackingConnector { inner, shared }
    }
}

impl tower_service::Service<http::Uri> for TrackingConnector {
    type Response = Tracked;
    type Error = <HttpConnector as tower_service::Service<http::Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Tracked, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let io = connecting.await?;
            shared.connection_opened();
            Ok(Tracked { io, shared })
        })
    }
}

/// A TCP connection to the sidecar; reports its close when dropped (hyper drops a connection
/// as soon as it sees it end, e.g. the sidecar process dying).
pub(crate) struct Tracked {
    io: TokioIo<TcpStream>,
    shared: Arc<Shared>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.shared.connection_closed();
    }
}

impl Connection for Tracked {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl Read for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
