//! tonic 0.14: a real tonic server on loopback in front of the gRPC health service, called by a real tonic
//! client over a `Channel`.

mod support;

use support::faults::{Fault, FaultyStore};

use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService, WatchStream};
use tower::buffer::BufferLayer;
use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenId, TokenStore, TokenStoreExt};

/// The health service, plus what any handler of yours would do: read the token from the extensions.
/// It answers with the user id in the `x-user-id` metadata, so the client can see the handler saw it.
struct WhoAmI {
    inner: HealthService,
}

#[tonic::async_trait]
impl Health for WhoAmI {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let token = request.extensions().get::<AuthenticatedToken>().cloned();
        let token = token.ok_or_else(|| Status::internal("TokenAuthLayer did not run"))?;
        let mut response = self.inner.check(request).await?;
        let user_id = MetadataValue::try_from(token.user_id().to_string()).expect("ascii user id");
        response.metadata_mut().insert("x-user-id", user_id);
        Ok(response)
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        self.inner.watch(request).await
    }
}

fn health() -> HealthServer<WhoAmI> {
    HealthServer::new(WhoAmI { inner: HealthService::from_health_reporter(HealthReporter::new()) })
}

/// A loopback listener and a channel that will connect to it.
async fn listen() -> (TcpIncoming, Channel) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (TcpIncoming::from(listener), Channel::from_shared(url).unwrap().connect_lazy())
}

/// Serves the health service behind the auth layer.
async fn serve(store: impl TokenStore) -> HealthClient<Channel> {
    let (incoming, channel) = listen().await;
    let router = Server::builder().layer(TokenAuthLayer::new(store)).add_service(health());
    tokio::spawn(router.serve_with_incoming(incoming));
    HealthClient::new(channel)
}

async fn check(
    client: &mut HealthClient<Channel>,
    authorization: Option<&str>,
) -> Result<Response<HealthCheckResponse>, Status> {
    let mut request = Request::new(HealthCheckRequest { service: String::new() });
    if let Some(authorization) = authorization {
        request.metadata_mut().insert("authorization", authorization.parse().unwrap());
    }
    client.check(request).await
}

fn assert_served_for(result: Result<Response<HealthCheckResponse>, Status>, user: &str) {
    let response = result.expect("authenticated call succeeds");
    assert_eq!(response.metadata().get("x-user-id").unwrap(), user);
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
}

fn assert_code(result: Result<Response<HealthCheckResponse>, Status>, code: Code) {
    let status = result.expect_err("call is rejected");
    assert_eq!(status.code(), code, "{status:?}");
}

async fn bearer(store: &impl TokenStore, token: NewToken) -> (TokenId, String) {
    let issued = store.issue(token).await.unwrap();
    (issued.record.id, format!("Bearer {}", issued.plain_text.expose()))
}

#[tokio::test]
async fn valid_token_is_served_and_the_handler_sees_it() {
    let store = MemoryStore::new();
    let (_, token) = bearer(&store, NewToken::access(42u64)).await;
    let mut client = serve(store).await;

    assert_served_for(check(&mut client, Some(&token)).await, "42");
}

#[tokio::test]
async fn missing_invalid_and_revoked_tokens_are_unauthenticated() {
    let store = MemoryStore::new();
    let (_, revoked) = bearer(&store, NewToken::access(2u64)).await;
    let (_, refresh) = bearer(&store, NewToken::refresh(1u64)).await;
    assert_eq!(store.revoke_all_for_user(&2u64.into()).await.unwrap(), 1);
    let mut client = serve(store).await;

    let result = check(&mut client, None).await;
    let status = result.as_ref().expect_err("no token");
    assert_eq!(status.message(), "Unauthenticated.");
    assert_code(result, Code::Unauthenticated);

    for authorization in ["Bearer 1|wrong", "Bearer garbage", "Basic dXNlcjpwYXNz", revoked.as_str(), refresh.as_str()]
    {
        assert_code(check(&mut client, Some(authorization)).await, Code::Unauthenticated);
    }
}

#[tokio::test]
async fn store_down_is_unavailable_not_unauthenticated() {
    let store = FaultyStore::new(MemoryStore::new());
    store.set(Fault::Fail);
    let mut client = serve(store).await;

    assert_code(check(&mut client, Some("Bearer 1|secret")).await, Code::Unavailable);
    // Malformed input never reaches the store.
    assert_code(check(&mut client, Some("Bearer garbage")).await, Code::Unauthenticated);
}

/// `MemoryStore` behind lookups that really suspend, so the layer takes its pending path.
fn yielding() -> FaultyStore<MemoryStore> {
    let store = FaultyStore::new(MemoryStore::new());
    store.set(Fault::Yield);
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_inside_the_auth_layer_survives_concurrent_calls() {
    let store = yielding();
    let mut tokens = Vec::new();
    for user in 0..8u64 {
        tokens.push((user, bearer(&store, NewToken::access(user)).await.1));
    }

    let (incoming, channel) = listen().await;
    // auth -> buffer(1) -> routes: the service the layer made ready is a `Buffer` holding one reserved slot.
    let router = Server::builder().layer(TokenAuthLayer::new(store)).layer(BufferLayer::new(1)).add_service(health());
    tokio::spawn(router.serve_with_incoming(incoming));
    let client = HealthClient::new(channel);

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200usize {
        let mut client = client.clone();
        let (user, token) = tokens[i % tokens.len()].clone();
        calls.spawn(async move {
            if i % 3 == 0 {
                assert_code(check(&mut client, Some("Bearer 1|wrong")).await, Code::Unauthenticated);
            } else {
                assert_served_for(check(&mut client, Some(&token)).await, &user.to_string());
            }
        });
    }
    while let Some(call) = calls.join_next().await {
        call.expect("no call panicked");
    }
}

/// With the `tonic` feature, `auth.layer(service)` is itself a tonic service: one service protected,
/// another public, on one server.
#[cfg(feature = "tonic")]
#[tokio::test]
async fn one_service_protected_and_another_public_on_one_server() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tower::Layer;

    let store = MemoryStore::new();
    let (_, token) = bearer(&store, NewToken::access(4u64)).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let (incoming, channel) = listen().await;
    let router = Server::builder().add_service(health()).add_service(TokenAuthLayer::new(store).layer(reflection));
    tokio::spawn(router.serve_with_incoming(incoming));

    // The health service is public: no token needed (the handler only sees no token).
    let status = HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await;
    assert_eq!(status.expect_err("WhoAmI wants a token").code(), Code::Internal, "public: the layer did not run");

    let list = |authorization: Option<String>| {
        let mut client = ServerReflectionClient::new(channel.clone());
        async move {
            let ask = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut request = Request::new(tokio_stream::once(ask));
            if let Some(value) = authorization {
                request.metadata_mut().insert("authorization", value.parse().unwrap());
            }
            let mut answers = client.server_reflection_info(request).await?.into_inner();
            let mut names = Vec::new();
            while let Some(answer) = answers.next().await {
                if let Some(MessageResponse::ListServicesResponse(list)) = answer?.message_response {
                    names.extend(list.service.into_iter().map(|s| s.name));
                }
            }
            Ok::<_, Status>(names)
        }
    };
    assert_eq!(list(None).await.expect_err("protected").code(), Code::Unauthenticated);
    assert_eq!(list(Some("Bearer 1|wrong".into())).await.expect_err("protected").code(), Code::Unauthenticated);
    let names = list(Some(token)).await.expect("authenticated");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
}
