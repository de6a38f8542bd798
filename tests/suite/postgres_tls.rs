//! `PgKeyStore` over TLS, as `sslmode` says, against the local PostgreSQL that
//! `.ci/postgres.sh` starts with `ssl=on` and a throwaway CA (`AXRA_TEST_DATABASE_CA`; its
//! server certificate names `localhost` and `127.0.0.1`).
#![cfg(feature = "postgres")]

use axra_auth::Environment;
use axra_auth::postgres::PgKeyStore;
use axra_auth::server::{KeyDigest, KeyStore, StoreErrorKind};
use rustls::pki_types::pem::PemObject;

/// `postgres://postgres:<password>@127.0.0.1:<port>/axra_test` and the CA file, or `None` (with
/// a loud message) when the variables are not set outside CI.
fn database() -> Option<(String, String)> {
    match (
        std::env::var("AXRA_TEST_DATABASE_URL"),
        std::env::var("AXRA_TEST_DATABASE_CA"),
    ) {
        (Ok(url), Ok(ca)) => {
            // The server trusts local connections, so any password works: one to look for in
            // error messages.
            let url = url.replacen(
                "postgres://postgres@",
                "postgres://postgres:hunter2-pg-secret@",
                1,
            );
            Some((url, ca))
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("AXRA_TEST_DATABASE_URL and AXRA_TEST_DATABASE_CA must be set in CI")
        }
        _ => {
            eprintln!(
                "\n\n*** SKIPPED: AXRA_TEST_DATABASE_URL / AXRA_TEST_DATABASE_CA are not set; run \
                 `source .ci/postgres.sh` ***\n"
            );
            None
        }
    }
}

/// The URL with `host` as the name to verify (connecting to 127.0.0.1 whatever it says) and
/// extra query parameters.
fn with(url: &str, host: &str, query: &str) -> String {
    let (prefix, rest) = url.split_once('@').unwrap();
    let port_and_db = rest.split_once(':').unwrap().1;
    format!("{prefix}@{host}:{port_and_db}?hostaddr=127.0.0.1&{query}")
}

/// Whether the store's connection is encrypted, per the server.
async fn encrypted(store: &PgKeyStore) -> Result<bool, String> {
    let client = store.pool().get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

fn other_ca_file() -> tempfile_path::Path {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    tempfile_path::Path::with("other-ca.pem", pem.as_bytes())
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn with(name: &str, contents: &[u8]) -> Path {
            let path = std::env::temp_dir().join(format!("axra-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            Path(path)
        }
        pub fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[tokio::test]
async fn verify_full_with_the_right_ca_and_host_works_and_is_encrypted() {
    let Some((url, ca)) = database() else { return };
    for host in ["localhost", "127.0.0.1"] {
        let store = PgKeyStore::connect(&with(
            &url,
            host,
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ))
        .unwrap();
        store.migrate().await.unwrap();
        assert_eq!(encrypted(&store).await, Ok(true), "{host}");
        let issued = store
            .create_business("TLS Tea", Environment::Test)
            .await
            .unwrap();
        let found = store
            .find_by_key(&KeyDigest::of(issued.api_key().expose_secret()))
            .await
            .unwrap();
        assert!(found.is_some());
    }
    // The same CA passed in code.
    let pem = std::fs::read(&ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let store =
        PgKeyStore::connect_with_roots(&with(&url, "localhost", "sslmode=verify-full"), roots)
            .unwrap();
    assert_eq!(encrypted(&store).await, Ok(true));
}

#[tokio::test]
async fn a_wrong_host_or_an_untrusted_ca_is_refused_without_a_secret() {
    let Some((url, ca)) = database() else { return };
    let other = other_ca_file();
    let refused = [
        // A name the certificate does not carry.
        with(
            &url,
            "db.example.test",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        // A CA that did not sign it, with either check.
        with(
            &url,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", other.as_str()),
        ),
        with(
            &url,
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={}", other.as_str()),
        ),
        // Mozilla's roots do not know the test CA.
        with(&url, "localhost", "sslmode=verify-full"),
        // `require` with a root file checks the chain, as libpq.
        with(
            &url,
            "localhost",
            &format!("sslmode=require&sslrootcert={}", other.as_str()),
        ),
        // So does `prefer` (libpq verifies the chain whenever it has a root file).
        with(
            &url,
            "localhost",
            &format!("sslmode=prefer&sslrootcert={}", other.as_str()),
        ),
    ];
    for refused in refused {
        let store = PgKeyStore::connect(&refused)
            .unwrap()
            .with_timeout(std::time::Duration::from_secs(3));
        let error = store
            .find_business("biz_nobody")
            .await
            .expect_err(&refused.replace("hunter2-pg-secret", "***"));
        assert_eq!(error.kind(), StoreErrorKind::Unavailable);
        let text = format!("{error} {error:?}");
        assert!(!text.contains("hunter2-pg-secret"), "{text}");
    }
}

#[tokio::test]
async fn weaker_modes_do_what_libpq_does() {
    let Some((url, ca)) = database() else { return };
    // verify-ca: the chain, not the name.
    let store = PgKeyStore::connect(&with(
        &url,
        "db.example.test",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .unwrap();
    assert_eq!(encrypted(&store).await, Ok(true));
    // require and prefer without a root: encrypted, unchecked.
    for mode in ["require", "prefer"] {
        let store = PgKeyStore::connect(&with(&url, "db.example.test", &format!("sslmode={mode}")))
            .unwrap();
        assert_eq!(encrypted(&store).await, Ok(true), "{mode}");
    }
    // No sslmode: prefer.
    let store = PgKeyStore::connect(&url).unwrap();
    assert_eq!(encrypted(&store).await, Ok(true));
    let store = PgKeyStore::connect(&with(&url, "localhost", "sslmode=disable")).unwrap();
    assert_eq!(encrypted(&store).await, Ok(false));
    // Only an address, in key=value form, as 0.2 accepted: still works (and is encrypted).
    let port = url.rsplit_once(':').unwrap().1.split('/').next().unwrap();
    let store = PgKeyStore::connect(&format!(
        "hostaddr=127.0.0.1 port={port} user=postgres password=hunter2-pg-secret dbname=axra_test"
    ))
    .unwrap();
    assert_eq!(encrypted(&store).await, Ok(true));
    // A `?` in the password cannot hide the sslmode after it: encoded, it is a password; raw,
    // the URL is refused.
    let encoded = with(
        &url,
        "db.example.test",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    )
    .replace("hunter2-pg-secret", "hunter2%3Fpg-secret");
    let store = PgKeyStore::connect(&encoded).unwrap();
    assert!(
        store.find_business("biz_nobody").await.is_err(),
        "verify-full still applies"
    );
    let raw = encoded.replace("%3F", "?");
    let error = PgKeyStore::connect(&raw).err().unwrap();
    assert!(!format!("{error} {error:?}").contains("hunter2"));
    // verify-ca without roots is refused before any connection, as libpq refuses it (rather
    // than accept any certificate of Mozilla's roots, for any name).
    let error = PgKeyStore::connect(&with(&url, "localhost", "sslmode=verify-ca"))
        .expect_err("verify-ca without a root file");
    assert_eq!(
        error.kind(),
        StoreErrorKind::InvalidConfiguration,
        "{error}"
    );
    // Bad settings are typed errors that do not repeat the URL.
    for bad in [
        with(&url, "localhost", "sslmode=verify-everything"),
        with(
            &url,
            "localhost",
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ),
    ] {
        let error = PgKeyStore::connect(&bad).err().unwrap();
        assert_eq!(
            error.kind(),
            StoreErrorKind::InvalidConfiguration,
            "{error}"
        );
        assert!(!format!("{error} {error:?}").contains("hunter2-pg-secret"));
    }
}
