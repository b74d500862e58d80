//! The exact responses of the layer and the logout service.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};

use crate::body::JsonBody;

/// Why a request was not let through. Every variant has one fixed response; see [`Rejection::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No bearer credentials at all: no `Authorization` header, an empty one, or another scheme.
    /// `401`, `WWW-Authenticate: Bearer` (RFC 6750 §3.1: no error code).
    MissingCredentials,
    /// A bearer token that is malformed, unknown, wrong, expired, revoked or of the wrong kind.
    /// `401`, `WWW-Authenticate: Bearer error="invalid_token"`; the cases are indistinguishable on purpose.
    InvalidToken,
    /// The token lacks a required ability. `403`, `WWW-Authenticate: Bearer error="insufficient_scope"`.
    InsufficientAbility,
    /// The token store failed or timed out. `503` with `Retry-After`: fail closed, never let the request
    /// through, and never answer 401 (which would make clients discard valid tokens).
    StoreUnavailable,
    /// The logout endpoint was called with a method other than `POST`. `405` with `Allow: POST`.
    MethodNotAllowed,
    /// A login was refused because the user holds the maximum number of sessions and the
    /// [`SessionLimit`](crate::session::SessionLimit) refuses new ones. `403`.
    SessionLimit,
    /// A bug on the server's side, not the client's (for example a token issued with a reserved ability).
    /// `500` with Laravel's `{"message":"Server Error"}`; the cause is logged, never sent.
    ServerError,
}

impl From<crate::store::StoreError> for Rejection {
    /// What a handler answers for a store error: `503` (retry later) for a failing, slow or corrupt store,
    /// `403` when the session limit refused a login, `500` for a request the crate refused as a bug in the
    /// caller. So `?` works in handlers returning `Result<_, Rejection>`.
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreErrorKind;
        match error.kind() {
            StoreErrorKind::SessionLimit => Rejection::SessionLimit,
            StoreErrorKind::InvalidInput => {
                tracing::error!(%error, "refused a request that is a bug in the caller; answering 500");
                Rejection::ServerError
            }
            _ => {
                tracing::warn!(%error, "token store failed; answering 503");
                Rejection::StoreUnavailable
            }
        }
    }
}

pub(crate) const UNAUTHENTICATED: &[u8] = br#"{"message":"Unauthenticated."}"#;
pub(crate) const LOGGED_OUT: &[u8] = br#"{"message":"Successfully logged out"}"#;
const INVALID_ABILITY: &[u8] = br#"{"message":"Invalid ability provided."}"#;
const UNAVAILABLE: &[u8] = br#"{"message":"Authentication is temporarily unavailable. Please retry."}"#;
const METHOD_NOT_ALLOWED: &[u8] = br#"{"message":"Method not allowed."}"#;
const SESSION_LIMIT: &[u8] = br#"{"message":"Too many sessions: log out of another device first."}"#;
const SERVER_ERROR: &[u8] = br#"{"message":"Server Error"}"#;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

impl Rejection {
    /// The HTTP status of the plain-HTTP response.
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::MissingCredentials | Rejection::InvalidToken => StatusCode::UNAUTHORIZED,
            Rejection::InsufficientAbility => StatusCode::FORBIDDEN,
            Rejection::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::SessionLimit => StatusCode::FORBIDDEN,
            Rejection::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code used for gRPC requests (16 UNAUTHENTICATED, 7 PERMISSION_DENIED,
    /// 14 UNAVAILABLE, 12 UNIMPLEMENTED, 8 RESOURCE_EXHAUSTED, 13 INTERNAL).
    pub fn grpc_code(self) -> u8 {
        match self {
            Rejection::MissingCredentials | Rejection::InvalidToken => 16,
            Rejection::InsufficientAbility => 7,
            Rejection::StoreUnavailable => 14,
            Rejection::MethodNotAllowed => 12,
            Rejection::SessionLimit => 8,
            Rejection::ServerError => 13,
        }
    }

    /// The response for a request; `grpc` selects a gRPC trailers-only response. (With the `axum`
    /// feature, `Rejection` is also an axum `IntoResponse`, in the HTTP form.)
    pub fn to_response(self, grpc: bool) -> Response<JsonBody> {
        self.into_response_with(grpc, |body| body)
    }

    /// [`to_response`](Self::to_response) with the body wrapped by `wrap` before the response is
    /// assembled, so that the response is not moved once more to change its body type.
    #[inline]
    pub(crate) fn into_response_with<B>(self, grpc: bool, wrap: impl FnOnce(JsonBody) -> B) -> Response<B> {
        if grpc {
            return self.grpc_response().map(wrap);
        }
        let body = match self {
            Rejection::MissingCredentials | Rejection::InvalidToken => &UNAUTHENTICATED,
            Rejection::InsufficientAbility => &INVALID_ABILITY,
            Rejection::StoreUnavailable => &UNAVAILABLE,
            Rejection::MethodNotAllowed => &METHOD_NOT_ALLOWED,
            Rejection::SessionLimit => &SESSION_LIMIT,
            Rejection::ServerError => &SERVER_ERROR,
        };
        let mut response = Response::new(wrap(JsonBody::from_static(body)));
        *response.status_mut() = self.status();
        *response.headers_mut() = self.headers().clone();
        response
    }

    /// The headers of the plain-HTTP response, built once per kind: every request without valid
    /// credentials gets a copy, and copying a map is much cheaper than hashing and inserting each header.
    fn headers(self) -> &'static HeaderMap {
        static HEADERS: [OnceLock<HeaderMap>; 7] = [const { OnceLock::new() }; 7];
        let index = match self {
            Rejection::MissingCredentials => 0,
            Rejection::InvalidToken => 1,
            Rejection::InsufficientAbility => 2,
            Rejection::StoreUnavailable => 3,
            Rejection::MethodNotAllowed => 4,
            Rejection::SessionLimit => 5,
            Rejection::ServerError => 6,
        };
        HEADERS[index].get_or_init(|| {
            let mut headers = HeaderMap::with_capacity(2);
            headers.insert(CONTENT_TYPE, APPLICATION_JSON);
            match self {
                Rejection::MissingCredentials => {
                    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                Rejection::InvalidToken => {
                    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
                }
                Rejection::InsufficientAbility => {
                    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="insufficient_scope""#));
                }
                Rejection::StoreUnavailable => {
                    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
                }
                Rejection::MethodNotAllowed => {
                    headers.insert(ALLOW, HeaderValue::from_static("POST"));
                }
                Rejection::SessionLimit | Rejection::ServerError => {}
            }
            headers
        })
    }

    fn grpc_response(self) -> Response<JsonBody> {
        // Trailers-only: HTTP 200, the status in the headers, an empty body.
        let (status, message) = match self {
            Rejection::MissingCredentials | Rejection::InvalidToken => ("16", "Unauthenticated."),
            Rejection::InsufficientAbility => ("7", "Invalid ability provided."),
            Rejection::StoreUnavailable => ("14", "Authentication is temporarily unavailable."),
            Rejection::MethodNotAllowed => ("12", "Method not allowed."),
            Rejection::SessionLimit => ("8", "Too many sessions."),
            Rejection::ServerError => ("13", "Server Error"),
        };
        let mut response = Response::new(JsonBody::empty());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(status));
        if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
            headers.insert("grpc-message", value);
        }
        response
    }
}

/// Whether the request is gRPC (`content-type: application/grpc`, `+proto`, grpc-web...).
#[inline]
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The logout success response.
pub(crate) fn logged_out() -> Response<JsonBody> {
    let mut response = Response::new(JsonBody::from_static(&LOGGED_OUT));
    response.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// A JSON response of `status` with `body` (serialized by serde) and `Content-Type: application/json`.
pub(crate) fn json<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<JsonBody> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(JsonBody::new(bytes));
            *response.status_mut() = status;
            response.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
            response
        }
        Err(error) => {
            tracing::error!(%error, "a response body could not be serialized; answering 500");
            Rejection::ServerError.to_response(false)
        }
    }
}

/// `404` `{"message":"Not found."}`, as Laravel words it.
pub(crate) fn not_found() -> Response<JsonBody> {
    json(StatusCode::NOT_FOUND, &serde_json::json!({ "message": "Not found." }))
}

/// `405` `{"message":"Method not allowed."}` with `Allow: allow`.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<JsonBody> {
    let mut response = Rejection::MethodNotAllowed.to_response(false);
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// Response future of the crate's endpoints ([`LogoutService`](crate::LogoutService) and the
/// [device services](crate::devices)): ready at once when nothing had to wait, boxed otherwise.
pub struct JsonFuture {
    state: JsonState,
}

enum JsonState {
    Ready(Option<Response<JsonBody>>),
    Pending(Pin<Box<dyn Future<Output = Response<JsonBody>> + Send>>),
}

impl JsonFuture {
    pub(crate) fn ready(response: Response<JsonBody>) -> Self {
        Self { state: JsonState::Ready(Some(response)) }
    }

    pub(crate) fn boxed(future: impl Future<Output = Response<JsonBody>> + Send + 'static) -> Self {
        Self { state: JsonState::Pending(Box::pin(future)) }
    }
}

impl Future for JsonFuture {
    type Output = Result<Response<JsonBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            JsonState::Ready(response) => Poll::Ready(Ok(response.take().expect("future polled after completion"))),
            JsonState::Pending(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for JsonFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonFuture")
    }
}

/// gRPC's percent-encoding of `grpc-message`: everything outside printable ASCII, and `%`, is escaped.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_has_no_error_code() {
        let r = Rejection::MissingCredentials.to_response(false);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn grpc_rejection_is_trailers_only() {
        let r = Rejection::InvalidToken.to_response(true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(r.headers()["grpc-message"], "Unauthenticated.");
    }

    #[test]
    fn percent_encoding_escapes_percent_and_non_ascii() {
        assert_eq!(percent_encode("50% é"), "50%25 %C3%A9");
    }
}
