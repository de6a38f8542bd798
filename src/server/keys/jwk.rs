//! A [`VerifyingKey`] to and from a JWK: what a JWKS publishes and what a verifier takes from one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};

use super::{KeyError, PublicParts, VerifyingKey, checked_kid};

impl VerifyingKey {
    /// A public key from a JWK (as a JWKS serves it): `OKP`/`Ed25519` or `EC`/`P-256`, with a
    /// `kid`. A JWK's `alg`, when present, must match its key type; a symmetric (`oct`) key is
    /// refused, whatever it says.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, KeyError> {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or(KeyError::UnsupportedJwk)
            .and_then(|kid| checked_kid(kid).map_err(|_| KeyError::UnsupportedJwk))?;
        let parts = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                PublicParts::Ed25519 { x: p.x.clone() }
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                PublicParts::P256 {
                    x: p.x.clone(),
                    y: p.y.clone(),
                }
            }
            _ => return Err(KeyError::UnsupportedJwk),
        };
        let agrees = jwk
            .common
            .key_algorithm
            .is_none_or(|stated| stated == parts.algorithm().jwk());
        if !agrees
            || jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return Err(KeyError::UnsupportedJwk);
        }
        // The components must be a valid point: parse them before trusting them.
        match &parts {
            PublicParts::Ed25519 { x } => {
                let bytes: [u8; 32] = URL_SAFE_NO_PAD
                    .decode(x)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(KeyError::UnsupportedJwk)?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| KeyError::UnsupportedJwk)?;
                if key.is_weak() {
                    // A small-order point: a fixed signature would verify any token.
                    return Err(KeyError::UnsupportedJwk);
                }
            }
            PublicParts::P256 { x, y } => {
                let x = URL_SAFE_NO_PAD
                    .decode(x)
                    .map_err(|_| KeyError::UnsupportedJwk)?;
                let y = URL_SAFE_NO_PAD
                    .decode(y)
                    .map_err(|_| KeyError::UnsupportedJwk)?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::UnsupportedJwk);
                }
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(4);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| KeyError::UnsupportedJwk)?;
            }
        }
        Self::from_parts(kid, parts).map_err(|_| KeyError::UnsupportedJwk)
    }

    /// Its public JWK (`kid`, `alg`, `use: sig`), or `None` for an HS256 key, which is secret.
    pub fn to_jwk(&self) -> Option<Jwk> {
        let common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_id: Some(self.kid.to_string()),
            key_algorithm: Some(self.algorithm.jwk()),
            ..CommonParameters::default()
        };
        let algorithm = match self.public.as_ref()? {
            PublicParts::Ed25519 { x } => {
                AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: x.clone(),
                })
            }
            PublicParts::P256 { x, y } => {
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: x.clone(),
                    y: y.clone(),
                })
            }
        };
        Some(Jwk { common, algorithm })
    }
}
