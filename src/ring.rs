//! The one rustls crypto provider of the crate: ring, named in one place.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// ring's rustls provider, given explicitly to every TLS configuration the crate builds (the
/// process-wide default may be unset, or another provider).
///
/// rustls 0.23.48 deprecates `ring::default_provider` because ring offers no post-quantum key
/// exchange; ring stays the crate's one provider (aws-lc-rs would add a C build to every user's
/// first build), so a newer rustls must not turn that choice into a warning, or an error under
/// `-D warnings`, in a build that resolved it.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
