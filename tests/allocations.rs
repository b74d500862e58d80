//! Heap allocations per request, counted exactly with a counting global allocator.
//!
//! The authenticated path through `TokenAuthLayer` over `MemoryStore` is synchronous: header parsing,
//! the map lookup, hashing and comparing never allocate. What is left is `http`'s extension map, which
//! allocates on the first insert into a request. Rejections allocate only the response's header map.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use tower::{service_fn, Service};
use tower_layer::Layer;
use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

/// Counts the allocations (and reallocations) made by the current thread, so that tests running in
/// parallel do not disturb each other.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a thread-local counter,
// which never allocates (const-initialised `Cell`), is touched besides.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` has too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The allocations `f` makes on this thread, and its result.
fn allocations_during<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

/// Polls a future that must complete at once (every service here answers without waiting).
fn complete<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("expected the future to complete on its first poll"),
    }
}

/// An inner service that allocates nothing itself and answers 200 only if the layer authenticated
/// the request.
fn inner() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone {
    service_fn(|request: Request<()>| {
        let status = match request.extensions().get::<AuthenticatedToken>() {
            Some(_) => StatusCode::OK,
            None => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

fn request(authorization: Option<&str>) -> Request<()> {
    let mut request = Request::get("/api/v1/me");
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    request.body(()).expect("valid request")
}

/// Calls a ready service with a prebuilt request and polls the response to the end, counting only
/// the call and the poll. The response is dropped outside the count (dropping frees, never allocates).
fn count_call<S>(service: &mut S, request: Request<()>) -> (usize, StatusCode)
where
    S: Service<Request<()>>,
    S::Response: HasStatus,
    S::Error: std::fmt::Debug,
{
    complete(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    let (allocations, response) = allocations_during(|| complete(service.call(request)).expect("no error"));
    (allocations, response.status())
}

trait HasStatus {
    fn status(&self) -> StatusCode;
}

impl<B> HasStatus for Response<B> {
    fn status(&self) -> StatusCode {
        Response::status(self)
    }
}

/// A layer over a store with a few thousand tokens, the bearer value of one of them, and the service.
fn authenticated_service() -> (impl Service<Request<()>, Response: HasStatus, Error: std::fmt::Debug>, String) {
    let store = MemoryStore::new();
    let mut bearer = String::new();
    for user in 0..5_000u64 {
        let issued = complete(store.issue(NewToken::access(user))).expect("issue");
        if user == 2_500 {
            bearer = format!("Bearer {}", issued.plain_text.expose());
        }
    }
    let mut service = TokenAuthLayer::new(store).layer(inner());
    // Warm up with other tokens: what is initialised once per process (the prebuilt rejection headers)
    // must not be counted.
    for value in [None, Some("Bearer 1|wrong-secret"), Some("Bearer 1|wrong-secret")] {
        let _ = count_call(&mut service, request(value));
    }
    (service, bearer)
}

#[test]
fn the_inner_service_alone_allocates_nothing() {
    // The baseline the counts below are measured against.
    let mut service = inner();
    let (allocations, status) = count_call(&mut service, request(Some("Bearer 1|secret")));
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "no layer, so no AuthenticatedToken");
    assert_eq!(allocations, 0);
}

#[test]
fn valid_token_costs_three_allocations_all_in_the_request_extensions() {
    let (mut service, bearer) = authenticated_service();
    let mut counts = Vec::new();
    for _ in 0..5 {
        let (allocations, status) = count_call(&mut service, request(Some(&bearer)));
        assert_eq!(status, StatusCode::OK, "the inner service saw the AuthenticatedToken");
        counts.push(allocations);
    }
    // Three per request, all `Extensions::insert` of the `AuthenticatedToken` into a request that had
    // no extensions yet (what any middleware that hands a value to handlers pays):
    //   1. the boxed `AnyMap` (`http` allocates the map itself lazily, on the first insert),
    //   2. that hash map's table,
    //   3. the `Box<dyn Any>` holding the `AuthenticatedToken` (the record, copied out of the store:
    //      an integer user id, a short name and `["*"]` abilities need no allocation of their own).
    // Parsing, the lookup (`MemoryStore` answers with `StoreFuture::ready`, which does not box),
    // SHA-256, the comparison and the response future (no `Box`) allocate nothing.
    assert_eq!(counts, [3, 3, 3, 3, 3]);
}

#[test]
fn rejections_allocate_only_the_response_headers() {
    let (mut service, bearer) = authenticated_service();
    let wrong_secret = format!("{}x", &bearer[..bearer.len() - 1]);
    let cases = [
        (None, "no Authorization header"),
        (Some("Bearer not|a-token"), "malformed token"),
        (Some(wrong_secret.as_str()), "wrong secret"),
        (Some("Bearer 999999999|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66"), "unknown id"),
    ];
    for (value, case) in cases {
        let (allocations, status) = count_call(&mut service, request(value));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        // Both are the copy of the prebuilt rejection headers (`Content-Type`, `WWW-Authenticate`):
        // a `HeaderMap` holds its index table and its entries in two allocations. The body is static.
        assert_eq!(allocations, 2, "{case}");
    }
}
