//! `PgKeyStore::connect` reads `PGSSLMODE` and `PGSSLROOTCERT` as libpq does, when the
//! connection string does not say (issue 19, defect 6). One test, alone in its binary: it sets
//! the process's environment.
//!
//! Needs a real PostgreSQL with TLS: `source .ci/postgres.sh`.
#![cfg(feature = "postgres")]

use axra_auth::postgres::PgKeyStore;
use axra_auth::server::StoreErrorKind;

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

fn set(name: &str, value: Option<&str>) {
    // SAFETY: the only test of this binary; no other thread reads the environment meanwhile.
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}

#[tokio::test]
async fn pgsslmode_and_pgsslrootcert_are_honoured_when_the_url_does_not_say() {
    let (Ok(url), Ok(ca)) = (
        std::env::var("AXRA_TEST_DATABASE_URL"),
        std::env::var("AXRA_TEST_DATABASE_CA"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the database must be set in CI"
        );
        eprintln!("\n\n*** SKIPPED: run `source .ci/postgres.sh` ***\n");
        return;
    };
    // No ~/.postgresql/root.crt to find.
    let home = std::env::temp_dir().join(format!("axra-pg-env-home-{}", std::process::id()));
    set("HOME", Some(home.to_str().unwrap()));

    // PGSSLMODE=disable: plain, although the server offers TLS.
    set("PGSSLMODE", Some("disable"));
    let store = PgKeyStore::connect(&url).unwrap();
    assert_eq!(encrypted(&store).await, Ok(false));
    // The URL wins over the environment.
    let store = PgKeyStore::connect(&format!("{url}?sslmode=require")).unwrap();
    assert_eq!(encrypted(&store).await, Ok(true));

    // PGSSLMODE=verify-ca without any root file: refused when building, as libpq.
    set("PGSSLMODE", Some("verify-ca"));
    let error = PgKeyStore::connect(&url).expect_err("verify-ca without roots");
    assert_eq!(
        error.kind(),
        StoreErrorKind::InvalidConfiguration,
        "{error}"
    );

    // PGSSLROOTCERT gives the roots: verify-full against the test CA works for its host name,
    // and a host name the certificate lacks is refused.
    set("PGSSLMODE", Some("verify-full"));
    set("PGSSLROOTCERT", Some(&ca));
    let store = PgKeyStore::connect(&url).unwrap();
    assert_eq!(encrypted(&store).await, Ok(true));
    let wrong_name = url.replacen("@127.0.0.1:", "@db.example.test:", 1) + "?hostaddr=127.0.0.1";
    let store = PgKeyStore::connect(&wrong_name)
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(3));
    assert!(encrypted(&store).await.is_err());

    // PGSSLROOTCERT with prefer: the chain is checked (a CA that did not sign it is refused).
    let other = home.join("other-ca.pem");
    std::fs::create_dir_all(&home).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other, params.self_signed(&key).unwrap().pem()).unwrap();
    set("PGSSLMODE", None);
    set("PGSSLROOTCERT", Some(other.to_str().unwrap()));
    let store = PgKeyStore::connect(&url)
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(3));
    assert!(encrypted(&store).await.is_err(), "prefer checks the chain");

    set("PGSSLROOTCERT", None);
    let _ = std::fs::remove_dir_all(&home);
}
