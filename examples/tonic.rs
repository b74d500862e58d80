//! tonic 0.14: one gRPC service protected by the auth layer, another left public, on one server.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example tonic --features tonic
//! ```
//!
//! The standard health service stays public (load balancers probe it without a token); server
//! reflection, which lists every service the server has, needs a token. Both come with their generated
//! code, so no `protoc` is needed. The example seeds a demo token, serves on 127.0.0.1:50051, and calls
//! itself: health without a token, reflection without one (`Unauthenticated`) and with it. The server
//! keeps running for other clients (`grpcurl -H "authorization: Bearer <token>" -plaintext
//! 127.0.0.1:50051 list`).
//!
//! The `tonic` feature makes `TokenAuth<S, _>` a tonic `NamedService`, so `auth.layer(service)` goes
//! into `add_service` like the service itself. To protect every service instead, put the layer on the
//! server: `Server::builder().layer(TokenAuthLayer::new(store))`.

use tokio_stream::StreamExt;
use tonic::transport::{Channel, Server};
use tonic::Request;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tower_layer::Layer;
use tower_token_auth::{MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let store = MemoryStore::new();
    let demo = store.issue(NewToken::access(1u64).name("demo")).await?;
    let auth = TokenAuthLayer::new(store);

    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let addr = "127.0.0.1:50051".parse()?;
    let server = Server::builder()
        .add_service(health) // public
        .add_service(auth.layer(reflection)) // needs a token
        .serve(addr);
    let server = tokio::spawn(server);
    println!("serving on {addr}; demo token: {}", demo.plain_text.expose());

    let channel = Channel::from_static("http://127.0.0.1:50051").connect_lazy();
    let health = HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await?;
    println!("client: health without a token: {:?}", health.get_ref().status());

    let mut reflection = ServerReflectionClient::new(channel);
    let status = list_services(&mut reflection, None).await.expect_err("no token");
    println!("client: reflection without a token: {:?} {:?}", status.code(), status.message());
    let services = list_services(&mut reflection, Some(&format!("Bearer {}", demo.plain_text.expose()))).await?;
    println!("client: reflection with the token lists {services:?}");

    server.await??;
    Ok(())
}

/// Asks the reflection service for the names of the server's services.
async fn list_services(
    client: &mut ServerReflectionClient<Channel>,
    authorization: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut request = Request::new(tokio_stream::once(ask));
    if let Some(authorization) = authorization {
        let value = authorization.parse().map_err(|_| tonic::Status::invalid_argument("bad token"))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut answers = client.server_reflection_info(request).await?.into_inner();
    let mut names = Vec::new();
    while let Some(answer) = answers.next().await {
        if let Some(MessageResponse::ListServicesResponse(list)) = answer?.message_response {
            names.extend(list.service.into_iter().map(|service| service.name));
        }
    }
    Ok(names)
}
