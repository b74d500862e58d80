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
use crate::body::{JsonBody, ResponseBody};
use crate::response::is_grpc;
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
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, St>
    where
        S: Service<Request<ReqBody>>,
    {
        Lookup {
            lookup: Lookup,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            config: Arc<Config<St>>,
        },
        Inner { #[pin] future: S::Future },
        Rejected { response: Option<Response<JsonBody>> },
    }
}

impl<S, ReqBody, St> ResponseFuture<S, ReqBody, St>
where
    S: Service<Request<ReqBody>>,
{
    #[inline]
    pub(crate) fn inner(future: S::Future) -> Self {
        Self { state: State::Inner { future } }
    }

    pub(crate) fn rejected(response: Response<JsonBody>) -> Self {
        Self { state: State::Rejected { response: Some(response) } }
    }

    pub(crate) fn lookup(lookup: Lookup, request: Request<ReqBody>, inner: S, config: Arc<Config<St>>) -> Self {
        Self { state: State::Lookup { lookup, request: Some(request), inner: Some(inner), config } }
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
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
                StateProj::Lookup { lookup, request, inner, config } => {
                    let found = ready!(lookup.poll_lookup(cx));
                    let mut request = request.take().expect("future polled after completion");
                    let next = match config.finish(&lookup.digest, found) {
                        Ok(token) => {
                            request.extensions_mut().insert(token);
                            let mut inner = inner.take().expect("future polled after completion");
                            State::Inner { future: inner.call(request) }
                        }
                        Err(rejection) => {
                            State::Rejected { response: Some(rejection.into_response(is_grpc(request.headers()))) }
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
