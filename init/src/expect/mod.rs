//! Packet assertions judged in the guest: the nat46 harness's JSON specs
//! and exact comparisons on capture files, live waits on an interface,
//! checksum validation, and named tests with KTAP results and a
//! kernel-health verdict per test.

pub mod captured;
pub mod checksum;
pub mod exact;
pub mod health;
pub mod ktap;
pub mod live;
pub mod spec;
