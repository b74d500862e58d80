//! The response future of [`TokenAuth`](crate::TokenAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::verify::{Config, Lookup};
use crate::body::ResponseBody;
use crate::response::{is_grpc, Rejection};
use crate::store::TokenStore;

pin_project! {
    /// Response future of [`TokenAuth`](crate::TokenAuth): a pending store lookup, then the inner
    /// service's future, or a rejection.
    pub struct ResponseFuture<S, ReqBody, St>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, St>,
        // The request's `authenticate` span, entered while the lookup and the inner service run.
        span: tracing::Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, St>
    where
        S: Service<Request<ReqBody>>,
    {
        // Boxed: only a store that answers later (over the network) gets here, and it has already
        // allocated its own future. Inline, the request and the inner service kept for later would make
        // every response future as big as a request (320 bytes with an empty `service_fn`), copied
        // several times per call, on the synchronous paths too (`MemoryStore`, every rejection).
        Lookup { pending: Option<Box<Pending<S, ReqBody, St>>> },
        Inner { #[pin] future: S::Future },
        // The response is built when polled, for the same reason: it is 112 bytes, the rejection 2.
        Rejected { rejection: Option<(Rejection, bool)> },
    }
}

/// What a pending lookup keeps for when the store answers.
struct Pending<S, ReqBody, St> {
    lookup: Lookup,
    request: Request<ReqBody>,
    inner: S,
    config: Arc<Config<St>>,
}

impl<S, ReqBody, St> ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
{
    #[inline]
    pub(crate) fn inner(future: S::Future, span: tracing::Span) -> Self {
        Self { state: State::Inner { future }, span }
    }

    /// A rejection, answered in gRPC form when `grpc`.
    #[inline]
    pub(crate) fn rejected(rejection: Rejection, grpc: bool) -> Self {
        Self { state: State::Rejected { rejection: Some((rejection, grpc)) }, span: tracing::Span::none() }
    }

    pub(crate) fn lookup(
        lookup: Lookup,
        request: Request<ReqBody>,
        inner: S,
        config: Arc<Config<St>>,
        span: tracing::Span,
    ) -> Self {
        let pending = Box::new(Pending { lookup, request, inner, config });
        Self { state: State::Lookup { pending: Some(pending) }, span }
    }
}

impl<S, ReqBody, ResBody, St> Future for ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: TokenStore,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { rejection } => {
                    let (rejection, grpc) = rejection.take().expect("future polled after completion");
                    return Poll::Ready(Ok(rejection.into_response_with(grpc, ResponseBody::rejection)));
                }
                StateProj::Lookup { pending } => {
                    let lookup = &mut pending.as_mut().expect("future polled after completion").lookup;
                    let found = ready!(lookup.poll_lookup(cx));
                    let Pending { lookup, mut request, mut inner, config } =
                        *pending.take().expect("future polled after completion");
                    let result = config.finish(&lookup.digest, found);
                    config.observe(this.span, lookup.started, &result);
                    let next = match result {
                        Ok(token) => {
                            request.extensions_mut().insert(token);
                            State::Inner { future: inner.call(request) }
                        }
                        Err(failure) => {
                            State::Rejected { rejection: Some((failure.rejection(), is_grpc(request.headers()))) }
                        }
                    };
                    this.state.set(next);
                }
            }
        }
    }
}

impl<S, ReqBody, St> fmt::Debug for ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Lookup { .. } => "Lookup",
            State::Inner { .. } => "Inner",
            State::Rejected { .. } => "Rejected",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
