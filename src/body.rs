//! Response bodies written by this crate.
//!
//! The auth layer keeps the inner service's body type: its responses are [`ResponseBody<B>`], which is
//! either the inner body, untouched, or a small [`JsonBody`] for a rejection. Both implement
//! [`http_body::Body`], so the layer fits axum, tonic and bare hyper without conversions.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// A complete, single-frame body: the JSON messages (and the empty gRPC rejections) of this crate.
#[derive(Clone, Default)]
pub struct JsonBody {
    data: Option<Bytes>,
}

impl JsonBody {
    /// A body holding `data`.
    pub fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self { data: (!data.is_empty()).then_some(data) }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self { data: None }
    }

    pub(crate) const fn from_static(data: &'static [u8]) -> Self {
        Self { data: Some(Bytes::from_static(data)) }
    }
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonBody").field("len", &self.data.as_ref().map_or(0, Bytes::len)).finish()
    }
}

impl Body for JsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

pin_project! {
    /// The body of responses from [`TokenAuth`](crate::TokenAuth) and
    /// [`RequireAbilities`](crate::ability::RequireAbilities): the inner service's body, or a rejection.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { body: JsonBody },
    }
}

impl<B> ResponseBody<B> {
    #[inline]
    pub(crate) fn inner(body: B) -> Self {
        Self { kind: Kind::Inner { body } }
    }

    pub(crate) fn rejection(body: JsonBody) -> Self {
        Self { kind: Kind::Rejection { body } }
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::inner(B::default())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Rejection { body } => f.debug_tuple("ResponseBody::Rejection").field(body).finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { body } => Poll::Ready(body.data.take().map(|d| Ok(Frame::data(B::Data::from(d))))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { body } => body.size_hint(),
        }
    }
}
