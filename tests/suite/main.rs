//! The integration tests that need only this package's own dev-dependencies, as one test binary
//! (one link, generic code compiled once): each module was a test file of its own. Tests that
//! change process-wide state (environment variables, the global allocator) stay in their own
//! binaries beside this directory; the tests that need reqwest, tonic, PostgreSQL, proptest or
//! tracing-subscriber live in the `integration/` workspace member, so that
//! `cargo run --example quickstart` never builds those crates.

#[path = "../common/mod.rs"]
mod common;

mod api_key;
mod attack_health;
mod bearer_http;
mod extractor;
mod faults;
mod first_contact;
mod health;
mod key_rotation;
mod metrics_recorded;
mod mock_server;
mod postgres_tls;
mod secrets;
// libtest starts tests in name order; the 10-second soak sorts first so that it is not the last
// test to start (it then overlaps the rest of the suite instead of trailing it).
#[path = "soak.rs"]
mod a_soak;
mod stateless;
mod token_cache;
mod trust_cache;
mod trust_cached;
mod trust_keys;
