//! The integration tests that need reqwest, tonic, PostgreSQL, proptest or tracing-subscriber, as
//! one test binary (one link, generic code compiled once): each module was a test file of its
//! own. Beside this directory, `postgres.rs` (it installs a global metrics recorder) and
//! `tracing_leak.rs` (its subscriber must see every event, and other tests' threads race it for
//! tracing's per-callsite interest) stay binaries of their own. The helpers in `common` are the
//! root package's `tests/common`.

#[path = "../../../tests/common/mod.rs"]
mod common;

#[cfg(feature = "tower-http")]
mod attack_redirects;
mod credential_files;
mod downstream;
mod https;
mod over_reqwest;
mod properties;
mod retry;
mod rotation;
mod servers;
mod trust;
mod trust_pg;
mod trust_retry;
