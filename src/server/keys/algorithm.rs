//! The algorithms a key can be bound to, and the one table of what each is called where: in a
//! JWT header, in `jsonwebtoken`, in a JWK. Adding an algorithm means a variant, its row here,
//! and its key type in [`keys`](super).

use std::fmt;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::KeyAlgorithm as JwkAlgorithm;

/// The algorithm a key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// HMAC with SHA-256: one shared secret signs and verifies.
    Hs256,
    /// Ed25519 signatures (`alg: EdDSA`).
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

/// One row of the table.
struct Row {
    /// Its name in a JWT header.
    name: &'static str,
    jwt: Algorithm,
    /// Its `alg` in a JWK.
    jwk: JwkAlgorithm,
}

impl KeyAlgorithm {
    /// The table: no wildcard arm, so a new variant does not compile until it has its row.
    const fn row(self) -> &'static Row {
        match self {
            KeyAlgorithm::Hs256 => &Row {
                name: "HS256",
                jwt: Algorithm::HS256,
                jwk: JwkAlgorithm::HS256,
            },
            KeyAlgorithm::EdDsa => &Row {
                name: "EdDSA",
                jwt: Algorithm::EdDSA,
                jwk: JwkAlgorithm::EdDSA,
            },
            KeyAlgorithm::Es256 => &Row {
                name: "ES256",
                jwt: Algorithm::ES256,
                jwk: JwkAlgorithm::ES256,
            },
        }
    }

    /// Its name in a JWT header (`HS256`, `EdDSA`, `ES256`).
    pub fn name(self) -> &'static str {
        self.row().name
    }

    pub(crate) fn jwt(self) -> Algorithm {
        self.row().jwt
    }

    /// Its `alg` in a JWK.
    pub(crate) fn jwk(self) -> JwkAlgorithm {
        self.row().jwk
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
