pub mod contract;
pub mod http;
