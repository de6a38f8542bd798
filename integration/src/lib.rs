//! Nothing to use: this package holds axra-auth's heavy integration tests (`tests/`), the tonic
//! and reqwest examples (`examples/`), and, below, the README's code blocks as doctests.

/// The README's code blocks, compiled (and, unless marked `no_run`, run) as doctests by
/// `cargo test --all-features` at the repository root, so a snippet that stops compiling fails
/// CI. Each block states the context it assumes in hidden `# ` lines. They live in this package
/// because several need reqwest or tonic, which the root package's quickstart should not build.
#[cfg(all(
    doctest,
    feature = "rustls",
    feature = "server",
    feature = "axum",
    feature = "reqwest",
    feature = "postgres",
    feature = "mock-server"
))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
