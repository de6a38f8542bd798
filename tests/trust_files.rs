//! Files the crate trusts (credential files, `SSL_CERT_FILE`, signing-key PEM files, PostgreSQL's
//! `sslrootcert`) that are not regular files: a FIFO with no writer, a device. Each is refused at
//! once with a typed error; none hangs the caller (a FIFO's `open()` blocks until a writer
//! appears, so the check must come before a blocking open).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use axra_auth::CredentialFiles;
use axra_auth::{CredentialError, CredentialKind};
use axra_auth::{Credentials, server::KeyError, server::SigningKey};

/// Generous: a regression fails the test here rather than hanging the suite.
const GUARD: Duration = Duration::from_secs(30);

/// Runs `f` on its own thread and returns its answer, failing the test if it has none within
/// [`GUARD`] (the stuck thread is left behind; the test process ends anyway).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(GUARD)
        .unwrap_or_else(|_| panic!("{what} hung on a FIFO"))
}

/// A scratch directory holding a FIFO nobody writes to.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("axra-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        mkfifo(&path);
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_credential_file_is_refused_at_once() {
    let scratch = Scratch::new("cred");
    let (key, secret) = (scratch.fifo("key"), scratch.fifo("secret"));
    let files = CredentialFiles::new(&key, &secret);
    let err = within("CredentialFiles::read", move || files.read()).unwrap_err();
    assert_eq!(
        err,
        CredentialError::UnreadableFile {
            kind: CredentialKind::ApiKey,
            error: std::io::ErrorKind::InvalidInput,
        }
    );
    // A good key file, a FIFO for the secret: the secret is named.
    let good_key = scratch.dir.join("good_key");
    std::fs::write(&good_key, "bk_test_abc\n").unwrap();
    let files = CredentialFiles::new(&good_key, &secret);
    let err = within("CredentialFiles::read", move || files.read()).unwrap_err();
    assert_eq!(
        err,
        CredentialError::UnreadableFile {
            kind: CredentialKind::ApiSecret,
            error: std::io::ErrorKind::InvalidInput,
        }
    );
}

#[test]
fn a_fifo_signing_key_file_is_refused_at_once() {
    let scratch = Scratch::new("pem");
    let pem = scratch.fifo("signing.pem");
    let err = within("SigningKey::from_pkcs8_pem_file", move || {
        SigningKey::from_pkcs8_pem_file("k1", &pem).map(|_| ())
    })
    .unwrap_err();
    assert_eq!(err, KeyError::File(std::io::ErrorKind::InvalidInput));
    // A device that never ends is no better.
    let err = within("SigningKey::from_pkcs8_pem_file", || {
        SigningKey::from_pkcs8_pem_file("k1", "/dev/zero").map(|_| ())
    })
    .unwrap_err();
    assert_eq!(err, KeyError::File(std::io::ErrorKind::InvalidInput));
}

/// The only test here that sets variables (`from_env` and `https::client()` read them).
#[test]
fn fifos_named_by_environment_variables_are_refused_at_once() {
    let scratch = Scratch::new("env");
    let (key, secret, roots) = (
        scratch.fifo("key"),
        scratch.fifo("secret"),
        scratch.fifo("ca.pem"),
    );
    // SAFETY: no other test in this binary reads or writes these variables.
    unsafe {
        std::env::remove_var("AXRA_API_KEY");
        std::env::remove_var("AXRA_API_SECRET");
        std::env::remove_var("AXRA_WEBHOOK_SECRET");
        std::env::set_var("AXRA_API_KEY_FILE", &key);
        std::env::set_var("AXRA_API_SECRET_FILE", &secret);
        std::env::set_var("SSL_CERT_FILE", &roots);
    }
    let err = within("Credentials::from_env", || {
        Credentials::from_env().map(|_| ())
    })
    .unwrap_err();
    assert_eq!(
        err,
        CredentialError::UnreadableFile {
            kind: CredentialKind::ApiKey,
            error: std::io::ErrorKind::InvalidInput,
        }
    );
    #[cfg(feature = "rustls")]
    within("https::client", || drop(axra_auth::https::client()));
    // SAFETY: as above.
    unsafe {
        std::env::remove_var("AXRA_API_KEY_FILE");
        std::env::remove_var("AXRA_API_SECRET_FILE");
        std::env::remove_var("SSL_CERT_FILE");
    }
}

#[cfg(feature = "postgres")]
#[test]
fn a_fifo_sslrootcert_is_refused_at_once() {
    use axra_auth::postgres::PgKeyStore;
    use axra_auth::server::StoreErrorKind;
    let scratch = Scratch::new("pg");
    let roots = scratch.fifo("root.crt");
    // No database is needed: the file is read before any connection.
    let url = format!(
        "postgres://axra@127.0.0.1:1/axra?sslmode=verify-full&sslrootcert={}",
        roots.display()
    );
    let err = within("PgKeyStore::connect", move || {
        let _runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = _runtime.enter();
        PgKeyStore::connect(&url).map(|_| ())
    })
    .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::InvalidConfiguration);
    let text = format!("{err} {err:?}");
    assert!(text.contains("not a regular file"), "{text}");
}
