//! Certificate verification for the connections to PostgreSQL, over the crate's rustls stack
//! (the *ring* provider): [`policy`] decides what a connection checks from its `sslmode` and the
//! roots there are; [`connector`] builds the TLS connector that checks it. The TLS section of
//! [`PgKeyStore::connect`](crate::postgres::PgKeyStore::connect) shows the table, with where it
//! differs from libpq, and must change with it.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::url::SslMode;
use crate::server::StoreError;

/// Where a connection's roots come from.
pub(crate) enum Roots {
    /// None: nothing to check a chain against.
    Absent,
    /// A root file, or roots given in code.
    Given(RootCertStore),
    /// `sslrootcert=system`: Mozilla's roots.
    System,
}

/// What a connection checks: one row of the table in the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// No certificate check (the handshake's signatures still are).
    Nothing,
    /// The chain leads to a root; any name.
    Chain,
    /// The chain, and the name the connection string gives.
    ChainAndName,
}

/// What a connection under `mode` checks, given the roots there are, or why the combination is
/// refused; with how it encrypts, from [`SslMode::encryption`].
pub(crate) fn policy(mode: SslMode, roots: &Roots) -> Result<(PgSslMode, Check), &'static str> {
    let given = matches!(roots, Roots::Given(_));
    let check = match mode {
        _ if matches!(roots, Roots::System) && mode != SslMode::VerifyFull => {
            return Err("sslrootcert=system needs sslmode=verify-full (as libpq)");
        }
        SslMode::Disable => Check::Nothing,
        SslMode::Prefer | SslMode::Require | SslMode::VerifyCa if given => Check::Chain,
        SslMode::Prefer | SslMode::Require => Check::Nothing,
        SslMode::VerifyCa => {
            return Err(
                "sslmode=verify-ca needs a root certificate file (sslrootcert, PGSSLROOTCERT or \
                 ~/.postgresql/root.crt), as libpq",
            );
        }
        SslMode::VerifyFull => Check::ChainAndName,
    };
    Ok((mode.encryption(), check))
}

fn invalid(what: &'static str) -> StoreError {
    StoreError::invalid_configuration(what)
}

/// The roots of a PEM file: a regular file of at most 1 MiB with at least one certificate, read
/// by [`crate::fs::read_regular_file`] (a FIFO is refused without blocking; the error names the
/// path, never the content).
pub(crate) fn roots_from_file(path: &std::path::Path) -> Result<RootCertStore, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let pem = crate::fs::read_regular_file(path, 1024 * 1024).map_err(|error| {
        StoreError::invalid_configuration(format!(
            "the sslrootcert file could not be used: {error}"
        ))
    })?;
    let mut roots = RootCertStore::empty();
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(invalid("the sslrootcert file holds no usable certificate"));
    }
    Ok(roots)
}

/// The TLS connector for `mode` and `roots`, as [`policy`] says (Mozilla's roots where it
/// checks without roots of its own).
///
/// # Errors
///
/// [`StoreErrorKind::InvalidConfiguration`](crate::server::StoreErrorKind::InvalidConfiguration)
/// when [`policy`] refuses the combination.
pub(crate) fn connector(mode: SslMode, roots: Roots) -> Result<MakeRustlsConnect, StoreError> {
    let (_, check) = policy(mode, &roots).map_err(invalid)?;
    let provider = crate::ring::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| invalid("TLS could not be set up"))?;
    let verified = |roots: Roots| {
        let roots = match roots {
            Roots::Given(roots) => roots,
            Roots::System | Roots::Absent => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|_| invalid("the root certificates could not be used"))
    };
    let config = match check {
        Check::ChainAndName => builder
            .with_webpki_verifier(verified(roots)?)
            .with_no_client_auth(),
        Check::Chain => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verified(roots)?)))
            .with_no_client_auth(),
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(Arc::clone(&provider))))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// [`Check::Chain`]: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// [`Check::Nothing`] (`prefer` and `require` without roots): encryption against eavesdropping,
/// no certificate check (the handshake's signatures are still verified).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_decides_what_each_mode_checks() {
        let roots = || Roots::Given(RootCertStore::empty());
        use Check::*;
        use SslMode::*;
        let table = [
            (Disable, Roots::Absent, Ok((PgSslMode::Disable, Nothing))),
            (Disable, roots(), Ok((PgSslMode::Disable, Nothing))),
            (Prefer, Roots::Absent, Ok((PgSslMode::Prefer, Nothing))),
            (Prefer, roots(), Ok((PgSslMode::Prefer, Chain))),
            (Require, Roots::Absent, Ok((PgSslMode::Require, Nothing))),
            (Require, roots(), Ok((PgSslMode::Require, Chain))),
            (VerifyCa, Roots::Absent, Err(())),
            (VerifyCa, roots(), Ok((PgSslMode::Require, Chain))),
            (
                VerifyFull,
                Roots::Absent,
                Ok((PgSslMode::Require, ChainAndName)),
            ),
            (VerifyFull, roots(), Ok((PgSslMode::Require, ChainAndName))),
            (
                VerifyFull,
                Roots::System,
                Ok((PgSslMode::Require, ChainAndName)),
            ),
            (VerifyCa, Roots::System, Err(())),
            (Require, Roots::System, Err(())),
            (Disable, Roots::System, Err(())),
        ];
        for (mode, roots, expected) in table {
            assert_eq!(policy(mode, &roots).map_err(|_| ()), expected, "{mode:?}");
        }
        // A refusal is a typed configuration error, from building the connector.
        let error = connector(VerifyCa, Roots::Absent).err().unwrap();
        assert_eq!(
            error.kind(),
            crate::server::StoreErrorKind::InvalidConfiguration
        );
    }
}
