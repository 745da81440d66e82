//! Counting the gRPC calls in flight (a `tower` layer), so a drain can wait until the worker
//! has no task running. A call counts from its request until its response body (the task's
//! stream of Flight data, or the coordinator channel) has ended or been dropped.

use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// The shared counter.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    total: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Calls in flight now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Calls started since the process began.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Resolves once no call is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.current() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn enter(self: &Arc<Self>) -> Guard {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.total.fetch_add(1, Ordering::Relaxed);
        Guard(Arc::clone(self))
    }
}

/// Decrements on drop.
struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The layer.
#[derive(Clone)]
pub struct InFlightLayer(pub Arc<InFlight>);

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlightService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightService {
            inner,
            counter: Arc::clone(&self.0),
        }
    }
}

/// The service.
#[derive(Clone)]
pub struct InFlightService<S> {
    inner: S,
    counter: Arc<InFlight>,
}

impl<S, Req, ResBody> tower::Service<http::Request<Req>> for InFlightService<S>
where
    S: tower::Service<http::Request<Req>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Req>) -> Self::Future {
        let guard = self.counter.enter();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|inner| CountedBody {
                inner,
                guard: Some(guard),
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds the call's guard until it ends or is dropped.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = r {
            this.guard.take();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::convert::Infallible;
    use tower::{Layer, Service};

    #[derive(Clone)]
    struct Echo;
    impl Service<http::Request<()>> for Echo {
        type Response = http::Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
                b"frame",
            )))))
        }
    }

    #[tokio::test]
    async fn a_call_counts_until_its_body_ends_or_drops() {
        let counter = Arc::new(InFlight::default());
        let mut svc = InFlightLayer(Arc::clone(&counter)).layer(Echo);
        let a = svc.call(http::Request::new(())).await.unwrap();
        let b = svc.call(http::Request::new(())).await.unwrap();
        assert_eq!((counter.current(), counter.total()), (2, 2));
        let body = a.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"frame");
        assert_eq!(
            counter.current(),
            1,
            "a body read to its end releases its call"
        );
        let waiter = {
            let c = Arc::clone(&counter);
            tokio::spawn(async move { c.idle().await })
        };
        drop(b);
        waiter.await.unwrap();
        assert_eq!((counter.current(), counter.total()), (0, 2));
        // idle() with nothing in flight returns at once.
        counter.idle().await;
    }
}
