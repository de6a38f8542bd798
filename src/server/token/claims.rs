//! What a token says: the claims it carries, what a valid one yields, and its header's `alg`
//! and `kid`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::VerifyError;
use crate::credentials::Environment;

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Claims {
    pub(super) sub: String,
    pub(super) name: String,
    pub(super) env: Environment,
    #[serde(rename = "gen")]
    pub(super) key_generation: u64,
    pub(super) iat: u64,
    pub(super) exp: u64,
    pub(super) iss: String,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: the business id.
    pub business_id: Arc<str>,
    /// The business name at issue time.
    pub business_name: Arc<str>,
    /// Live or test.
    pub environment: Environment,
    /// The key generation the token was issued for.
    pub key_generation: u64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at_unix: u64,
}

/// The `alg` and `kid` of a token's header, read without the rest of it (`jsonwebtoken` parses
/// the whole header again when it checks the signature, against the key chosen here).
pub(crate) fn header_alg_and_kid(token: &str) -> Result<(String, Option<String>), VerifyError> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct AlgAndKid {
        alg: String,
        kid: Option<String>,
    }
    let (header, _) = token.split_once('.').ok_or(VerifyError::Malformed)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| VerifyError::Malformed)?;
    let AlgAndKid { alg, kid } =
        serde_json::from_slice(&json).map_err(|_| VerifyError::Malformed)?;
    Ok((alg, kid))
}
