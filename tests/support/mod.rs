//! Shared by the integration tests: the network-namespace SSH test bed of the library.

#[allow(unused_imports)]
pub use duststack::testbed::{keygen, TestBed, TestHost};
