pub mod cache_history;
pub mod example_server;
pub mod faults;
pub mod flow;
pub mod http;
#[cfg(feature = "redis")]
pub mod redis;
