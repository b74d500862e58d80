//! tonic 0.14: the auth layer in front of a gRPC server (the standard health service, so no protoc is
//! needed), and a handler reading the `AuthenticatedToken` from `tonic::Request::extensions()`.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example tonic
//! ```
//!
//! It seeds a demo token, serves on 127.0.0.1:50051, and calls itself with tonic's health client: once
//! with the token, once without (`Unauthenticated`). The server keeps running for other clients.

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService, WatchStream};
use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

/// The health service, wrapped the way any service of yours reads the token: from the extensions,
/// where `TokenAuthLayer` put it. Unauthenticated calls never get here.
struct AuditedHealth {
    inner: HealthService,
}

#[tonic::async_trait]
impl Health for AuditedHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let token = request.extensions().get::<AuthenticatedToken>().cloned();
        let token = token.ok_or_else(|| Status::internal("TokenAuthLayer is not installed"))?;
        println!("server: health check by user {} (token {:?})", token.user_id(), token.name());

        let mut response = self.inner.check(request).await?;
        if let Ok(user_id) = MetadataValue::try_from(token.user_id().to_string()) {
            response.metadata_mut().insert("x-user-id", user_id);
        }
        Ok(response)
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        self.inner.watch(request).await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = MemoryStore::new();
    let demo = store.issue(NewToken::access(1u64).name("demo")).await?;
    let bearer = format!("Bearer {}", demo.plain_text.expose());

    let health = HealthServer::new(AuditedHealth { inner: HealthService::from_health_reporter(HealthReporter::new()) });
    let addr = "127.0.0.1:50051".parse()?;
    let server = Server::builder().layer(TokenAuthLayer::new(store)).add_service(health).serve(addr);
    let server = tokio::spawn(server);
    println!("serving grpc.health.v1.Health on {addr}; demo token: {}", demo.plain_text.expose());

    let channel = Channel::from_static("http://127.0.0.1:50051").connect_lazy();
    let mut client = HealthClient::new(channel);

    let mut request = Request::new(HealthCheckRequest { service: String::new() });
    request.metadata_mut().insert("authorization", bearer.parse()?);
    let response = client.check(request).await?;
    println!(
        "client: with the token: {:?}, x-user-id = {:?}",
        response.get_ref(),
        response.metadata().get("x-user-id")
    );

    let status = client.check(HealthCheckRequest { service: String::new() }).await.expect_err("no token");
    println!("client: without a token: {:?} {:?}", status.code(), status.message());

    server.await??;
    Ok(())
}
