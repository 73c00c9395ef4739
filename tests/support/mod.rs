//! Shared by the integration tests: the network-namespace SSH test bed of the library.

pub use duststack::testbed::TestBed;
