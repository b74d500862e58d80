//! Readiness: `TokenAuth` calls the inner service it made ready, even when the store answers later.
//!
//! `tower::buffer::Buffer` panics (or fails) when called without a slot reserved by `poll_ready`, and it
//! reserves the slot in the handle that was polled, not in its clones. So auth -> buffer -> service, under
//! concurrent load with valid and rejected requests mixed, fails if the layer calls a clone instead of the
//! service it made ready, and hangs if a rejected request leaks the reserved slot.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use support::faults::{Fault, FaultyStore};

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::buffer::BufferLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStore, TokenStoreExt};

const TASKS: usize = 24;
const REQUESTS_PER_TASK: usize = 25;

/// `MemoryStore` behind lookups that really suspend, so the layer takes its pending path.
fn yielding() -> FaultyStore<MemoryStore> {
    let store = FaultyStore::new(MemoryStore::new());
    store.set(Fault::Yield);
    store
}

async fn handler(request: Request<()>) -> Result<Response<String>, Infallible> {
    // Keep the buffer's single slot busy for a moment, so other callers really wait in `poll_ready`.
    tokio::task::yield_now().await;
    let token = request.extensions().get::<AuthenticatedToken>().expect("set by the layer");
    Ok(Response::new(format!("user {}", token.user_id())))
}

/// What a request sends and what it must get back.
#[derive(Clone)]
enum Case {
    Valid { bearer: String, user: u64 },
    Rejected(String),
    Missing,
}

async fn cases(store: &impl TokenStore) -> Vec<Case> {
    let mut cases = Vec::new();
    for user in 0..6u64 {
        let issued = store.issue(NewToken::access(user)).await.unwrap();
        cases.push(Case::Valid { bearer: format!("Bearer {}", issued.plain_text.expose()), user });
        // Known id, wrong secret: a full store lookup that ends in 401.
        cases.push(Case::Rejected(format!("Bearer {}|wrong-secret", issued.record.id)));
    }
    let refresh = store.issue(NewToken::refresh(99u64)).await.unwrap();
    cases.push(Case::Rejected(format!("Bearer {}", refresh.plain_text.expose())));
    cases.push(Case::Rejected("Bearer 123456|unknown-id".to_owned()));
    cases.push(Case::Rejected("Bearer malformed".to_owned()));
    cases.push(Case::Missing);
    cases
}

/// auth -> buffer(1) -> handler, hammered from many tasks; each task reuses its clone for many requests.
async fn hammer<St: TokenStore>(store: St) {
    let cases = cases(&store).await;
    let service =
        ServiceBuilder::new().layer(TokenAuthLayer::new(store)).layer(BufferLayer::new(1)).service_fn(handler);

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let mut service = service.clone();
        let cases = cases.clone();
        tasks.spawn(async move {
            let (mut ok, mut unauthorized) = (0, 0);
            for i in 0..REQUESTS_PER_TASK {
                let case = &cases[(task * REQUESTS_PER_TASK + i) % cases.len()];
                let mut request = Request::get("/");
                match case {
                    Case::Valid { bearer, .. } | Case::Rejected(bearer) => {
                        request = request.header(AUTHORIZATION, bearer)
                    }
                    Case::Missing => {}
                }
                let response = service.ready().await.unwrap().call(request.body(()).unwrap()).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                match case {
                    Case::Valid { user, .. } => {
                        assert_eq!(status, StatusCode::OK);
                        assert_eq!(body, format!("user {user}"));
                        ok += 1;
                    }
                    Case::Rejected(_) | Case::Missing => {
                        assert_eq!(status, StatusCode::UNAUTHORIZED);
                        assert_eq!(body, r#"{"message":"Unauthenticated."}"#);
                        unauthorized += 1;
                    }
                }
            }
            (ok, unauthorized)
        });
    }

    let all = async {
        let (mut ok, mut unauthorized) = (0, 0);
        while let Some(task) = tasks.join_next().await {
            let (o, u) = task.expect("no task panicked");
            ok += o;
            unauthorized += u;
        }
        (ok, unauthorized)
    };
    // A rejection that kept the buffer slot it reserved would starve everyone else: fail, don't hang.
    let (ok, unauthorized) = tokio::time::timeout(Duration::from_secs(60), all).await.expect("no deadlock");
    let expected_ok =
        (0..TASKS * REQUESTS_PER_TASK).filter(|n| matches!(cases[n % cases.len()], Case::Valid { .. })).count();
    assert_eq!(ok + unauthorized, TASKS * REQUESTS_PER_TASK);
    assert_eq!(ok, expected_ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buffer_inside_auth_with_async_lookups_under_load() {
    hammer(yielding()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buffer_inside_auth_with_memory_store_under_load() {
    hammer(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buffer_inside_auth_with_dyn_store_under_load() {
    let store: Arc<dyn TokenStore> = Arc::new(yielding());
    hammer(store).await;
}
