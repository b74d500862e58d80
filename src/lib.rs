//! Laravel Sanctum-compatible personal access tokens for tower: authentication and "log out everywhere".
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]

pub mod body;
pub mod clock;
pub mod response;
pub mod store;
pub mod token;

pub use store::{MemoryStore, StoreError, StoreFuture, TokenStore, TokenStoreExt};
pub use token::{Abilities, IssuedToken, NewToken, TokenId, TokenKind, TokenRecord, UserId};
