use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::verify::{Config, Failure, Started};
use super::TokenAuthLayer;
use crate::authenticated::Guest;
use crate::body::ResponseBody;
use crate::observability::record;
use crate::response::is_grpc;
use crate::store::TokenStore;

/// Middleware that authenticates requests with bearer tokens. See the [module docs](crate::auth).
pub struct TokenAuth<S, St> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config<St>>,
}

impl<S, St> TokenAuth<S, St> {
    /// Wraps `inner`, authenticating against `store` with default settings.
    pub fn new(inner: S, store: St) -> Self {
        TokenAuthLayer::new(store).into_service(inner)
    }

    /// A [`TokenAuthLayer`] for `store`.
    pub fn layer(store: St) -> TokenAuthLayer<St> {
        TokenAuthLayer::new(store)
    }

    define_inner_service_accessors!();
}

impl<St> TokenAuthLayer<St> {
    fn into_service<S>(self, inner: S) -> TokenAuth<S, St> {
        TokenAuth { inner, config: self.config }
    }
}

/// With the `tonic` feature: `Server::builder().add_service(layer.layer(svc))` protects one service and
/// leaves the others public, since the wrapped service keeps its gRPC name.
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl<S: tonic::server::NamedService, St> tonic::server::NamedService for TokenAuth<S, St> {
    const NAME: &'static str = S::NAME;
}

impl<S: Clone, St> Clone for TokenAuth<S, St> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), config: Arc::clone(&self.config) }
    }
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for TokenAuth<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth").field("inner", &self.inner).field("config", &self.config).finish()
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for TokenAuth<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: TokenStore,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, St>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let started = record::Started::now();
        let span = tracing::info_span!(
            target: "tower_token_auth",
            "authenticate",
            user.id = tracing::field::Empty,
            token.id = tracing::field::Empty,
            session.id = tracing::field::Empty,
            outcome = tracing::field::Empty,
            cache = tracing::field::Empty,
        );
        // In the span, so that a store answering at once can mark it (`CachedStore`: `cache = "hit"`).
        match span.in_scope(|| self.config.start_at(request.headers(), started)) {
            Started::Done(result) => {
                self.config.observe(&span, started, &result);
                match result {
                    Ok(token) => {
                        request.extensions_mut().insert(token);
                        let future = span.in_scope(|| self.inner.call(request));
                        ResponseFuture::inner(future, span)
                    }
                    Err(Failure::Missing) if self.config.optional => {
                        // Marks the request as a guest of an optional layer, so that a handler demanding
                        // a token answers the usual 401 rather than "no layer" (see `extract`).
                        request.extensions_mut().insert(Guest);
                        let future = span.in_scope(|| self.inner.call(request));
                        ResponseFuture::inner(future, span)
                    }
                    Err(failure) => {
                        if failure == Failure::Missing && is_preflight(&request) {
                            self.config.preflight_rejected(request.uri().path());
                        }
                        ResponseFuture::rejected(failure.rejection(), is_grpc(request.headers()))
                    }
                }
            }
            Started::Pending(lookup) => {
                // Take the service that was made ready and leave a clone in its place: the clone may
                // not be ready (e.g. behind `tower::buffer::Buffer`).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::lookup(lookup, request, inner, Arc::clone(&self.config), span)
            }
        }
    }
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::OPTIONS
        && request.headers().contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}
