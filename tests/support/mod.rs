pub mod contract;
pub mod faults;
pub mod http;
