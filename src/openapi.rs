//! The crate's endpoints and the bearer scheme for your [utoipa](https://docs.rs/utoipa) OpenAPI document
//! (feature `utoipa`).
//!
//! [`TokenAuthApi`] is a [`utoipa::Modify`]: add it to your `#[derive(OpenApi)]` (or call
//! [`modify`](utoipa::Modify::modify) on a document you built) and the document gains
//!
//! - the `bearerAuth` security scheme (`http`, `bearer`, Sanctum's `{id}|{secret}` format);
//! - [`LogoutService`](crate::LogoutService) (`POST`, with `?scope=`), [`SessionListService`](crate::SessionListService)
//!   (`GET`) and [`RevokeSessionService`](crate::RevokeSessionService) (`DELETE .../{id}`), at the paths you
//!   mount them on, with every answer (`200`, `401` with `WWW-Authenticate`, `404`, `422`, `503` with
//!   `Retry-After`) and their JSON bodies;
//! - the schemas and responses they use (`Message`, `Session`, `Unauthenticated`...), unless your document
//!   already has components of those names.
//!
//! These operations are the ones in the example server's document (`examples/openapi.json`), which CI checks
//! against the running server with Schemathesis; a test keeps the two identical.
//!
//! ```
//! use tower_token_auth::openapi::TokenAuthApi;
//! use utoipa::Modify;
//!
//! let mut doc = utoipa::openapi::OpenApiBuilder::new().build();
//! TokenAuthApi::new().logout_path("/logout").sessions_path("/devices").modify(&mut doc);
//! assert!(doc.paths.paths.contains_key("/logout"));
//! assert!(doc.paths.paths.contains_key("/devices/{id}"));
//! assert!(doc.components.unwrap().security_schemes.contains_key("bearerAuth"));
//! ```
//!
//! With the derive macro (utoipa's `macros` feature): `#[openapi(modifiers(&TokenAuthApi::DEFAULT))]`.

use utoipa::openapi::OpenApi;

/// The crate's part of an OpenAPI document: its endpoints, their components and the bearer scheme.
const FRAGMENT: &str = include_str!("openapi.json");

const LOGOUT: &str = "/api/v1/auth/logout";
const SESSIONS: &str = "/api/v1/auth/sessions";

/// Adds the crate's endpoints and the `bearerAuth` scheme to a utoipa document. See the
/// [module docs](crate::openapi).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAuthApi {
    logout: &'static str,
    sessions: &'static str,
}

impl TokenAuthApi {
    /// The endpoints at their suggested paths: `/api/v1/auth/logout`, `/api/v1/auth/sessions` and
    /// `/api/v1/auth/sessions/{id}`.
    pub const DEFAULT: Self = Self { logout: LOGOUT, sessions: SESSIONS };

    /// [`DEFAULT`](Self::DEFAULT).
    pub const fn new() -> Self {
        Self::DEFAULT
    }

    /// Where [`LogoutService`](crate::LogoutService) is mounted.
    pub const fn logout_path(mut self, path: &'static str) -> Self {
        self.logout = path;
        self
    }

    /// Where [`SessionListService`](crate::SessionListService) is mounted;
    /// [`RevokeSessionService`](crate::RevokeSessionService) is then at `{path}/{id}`.
    pub const fn sessions_path(mut self, path: &'static str) -> Self {
        self.sessions = path;
        self
    }

    /// The crate's part of the document on its own.
    pub fn openapi(&self) -> OpenApi {
        let mut fragment: OpenApi = serde_json::from_str(FRAGMENT).expect("src/openapi.json is a valid document");
        // Rebuilt by iteration: the map is a `BTreeMap` or an `IndexMap` depending on utoipa's features.
        for (path, item) in std::mem::take(&mut fragment.paths.paths) {
            let mounted = match path.as_str() {
                LOGOUT => self.logout.to_owned(),
                SESSIONS => self.sessions.to_owned(),
                _ => format!("{}/{{id}}", self.sessions.trim_end_matches('/')),
            };
            fragment.paths.paths.insert(mounted, item);
        }
        fragment
    }
}

impl Default for TokenAuthApi {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl utoipa::Modify for TokenAuthApi {
    /// Merges [`openapi`](Self::openapi) into `openapi`: paths and components it does not have yet.
    fn modify(&self, openapi: &mut OpenApi) {
        openapi.merge(self.openapi());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Everything survives utoipa's types but `required` on response headers, which utoipa 5's `Header`
    /// does not have (the headers are still documented, and always sent).
    #[test]
    fn utoipa_keeps_every_field_of_the_fragment() {
        let mut fragment: Value = serde_json::from_str(FRAGMENT).unwrap();
        for response in fragment["components"]["responses"].as_object_mut().unwrap().values_mut() {
            let headers = response.get_mut("headers").and_then(Value::as_object_mut);
            for header in headers.into_iter().flat_map(|h| h.values_mut()) {
                header.as_object_mut().unwrap().remove("required");
            }
        }
        let through_utoipa = serde_json::to_value(TokenAuthApi::new().openapi()).unwrap();
        assert_eq!(through_utoipa["paths"], fragment["paths"]);
        assert_eq!(through_utoipa["components"], fragment["components"]);
    }

    #[test]
    fn the_example_server_documents_the_same_operations() {
        let fragment: Value = serde_json::from_str(FRAGMENT).unwrap();
        let example: Value = serde_json::from_str(include_str!("../examples/openapi.json")).unwrap();
        for (path, item) in fragment["paths"].as_object().unwrap() {
            assert_eq!(&example["paths"][path], item, "{path}");
        }
        for kind in ["schemas", "responses", "securitySchemes"] {
            for (name, component) in fragment["components"][kind].as_object().unwrap() {
                assert_eq!(&example["components"][kind][name], component, "{kind}/{name}");
            }
        }
    }

    #[test]
    fn paths_follow_where_the_services_are_mounted() {
        let doc = TokenAuthApi::new().logout_path("/auth/logout").sessions_path("/me/devices/").openapi();
        let mut paths: Vec<&String> = doc.paths.paths.keys().collect();
        paths.sort();
        assert_eq!(paths, ["/auth/logout", "/me/devices/", "/me/devices/{id}"]);
    }
}
