//! What `benches/auth.rs` and `benches/redis.rs` share: the request every benchmark rebuilds, and the
//! inner service.

#![allow(dead_code)] // each benchmark uses a part

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::Empty;
use tower::{service_fn, Service};

pub type Body = Empty<Bytes>;

/// The parts every request is rebuilt from, identically in every benchmark.
pub struct RequestTemplate {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl RequestTemplate {
    pub fn new(authorization: Option<&str>) -> Self {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            // Shared bytes, like a parsed request's header values (slices of the connection's read
            // buffer): each request's clone costs a reference count increment and decrement.
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("valid header value"));
        }
        Self { method: Method::GET, uri: Uri::from_static("/api/v1/me"), headers }
    }

    /// A copy sharing no bytes with `self`, for another thread: two real requests share no buffer,
    /// so no reference count is written from both threads.
    pub fn for_another_thread(&self) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(name, HeaderValue::from_bytes(value.as_bytes()).expect("valid header value"));
        }
        Self { method: self.method.clone(), uri: self.uri.clone(), headers }
    }

    pub fn bearer(token: &str) -> Self {
        Self::new(Some(&format!("Bearer {token}")))
    }

    #[inline]
    pub fn request(&self) -> Request<Body> {
        let mut request = Request::new(Body::new());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The inner service of every benchmark: an empty `200`.
pub fn empty_ok(
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(|_request: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::new())) })
}
