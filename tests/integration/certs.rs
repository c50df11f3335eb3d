//! `meshguard certs`: parses the command line as the binary does, generates, then checks the
//! files, their modes, the caBundle and that a TLS client trusting only the CA accepts the
//! serving certificate for the Service's names (and for no other name).
//!
//! (The library is called rather than the binary: the binary path is shared by every build in a
//! shared target directory.)

use base64::Engine as _;
use clap::Parser;
use meshguard::certs::{CertsError, Written};
use meshguard::cli::{Cli, Command};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;

fn certs_in(dir: &Path, extra: &[&str]) -> Result<Written, CertsError> {
    let out = dir.to_str().expect("utf-8 path");
    let mut args = vec!["meshguard", "certs", "--out", out];
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).expect("command line parses");
    let Command::Certs(args) = cli.command else {
        panic!("not the certs command");
    };
    meshguard::certs::generate(&args)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Complete a TLS handshake in memory: server with the generated pair, client trusting only
/// `ca_pem` and dialing `name`. Returns the client's error, if any.
fn handshake(dir: &Path, name: &str) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair = meshguard::tls::load_pair(&read(dir, "tls.pem"), &read(dir, "tls-key.pem"))
        .expect("generated pair loads");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(dir, "ca.pem")) {
        roots.add(cert.expect("ca pem")).expect("add CA");
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            pair.key.cert.clone(),
            rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(dir, "tls-key.pem"))
                .expect("key"),
        )
        .expect("server config");
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    let mut client =
        rustls::ClientConnection::new(Arc::new(client_config), server_name).expect("client");
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).expect("server");
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).expect("client write");
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).expect("server read");
            // A server-side error follows a client alert; the client's view is reported.
            let _ = server.process_new_packets();
        }
        let mut buf = Vec::new();
        server.write_tls(&mut buf).expect("server write");
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).expect("client read");
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn writes_ca_and_serving_certificate_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let written = certs_in(
        &out,
        &["--service", "guard", "--namespace", "sec", "--days", "30"],
    )
    .expect("certs");

    // The printed caBundle is base64 of ca.pem.
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(&written.ca_bundle)
        .expect("caBundle is base64");
    assert_eq!(bundle, read(&out, "ca.pem"));
    assert_eq!(written.cert, out.join("tls.pem"));
    assert_eq!(written.key, out.join("tls-key.pem"));

    // The serving certificate names every form of the Service, and only those.
    let pem = read(&out, "tls.pem");
    let der = CertificateDer::from_pem_slice(&pem).expect("leaf pem");
    let (_, leaf) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .expect("san ext")
        .expect("san present")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        sans,
        vec![
            "DNSName(guard.sec.svc)",
            "DNSName(guard.sec.svc.cluster.local)",
            "DNSName(guard.sec)",
            "DNSName(guard)"
        ]
    );
    let days_left = (leaf.validity().not_after.timestamp()
        - time::OffsetDateTime::now_utc().unix_timestamp())
        / 86_400;
    assert!((29..=30).contains(&days_left), "{days_left}");

    // A client trusting only the CA accepts the certificate for the Service's names...
    for name in ["guard.sec.svc", "guard.sec.svc.cluster.local", "guard"] {
        handshake(&out, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // ...and for no other.
    let err = handshake(&out, "guard.other.svc").unwrap_err();
    assert!(
        err.to_string().contains("not valid for name"),
        "unexpected error: {err}"
    );
}

#[cfg(unix)]
#[test]
fn private_keys_are_mode_0600_and_certificates_0644() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    certs_in(out, &[]).expect("certs");
    let mode = |f: &str| {
        std::fs::metadata(out.join(f))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ca-key.pem"), 0o600);
    assert_eq!(mode("tls-key.pem"), 0o600);
    assert_eq!(mode("ca.pem"), 0o644);
    assert_eq!(mode("tls.pem"), 0o644);

    // --force replaces the files and tightens a loosened key.
    std::fs::set_permissions(
        out.join("tls-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let before = read(out, "tls.pem");
    certs_in(out, &["--force"]).expect("certs --force");
    assert_eq!(mode("tls-key.pem"), 0o600);
    assert_ne!(read(out, "tls.pem"), before);
}

#[test]
fn default_names_are_meshguard_in_meshguard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = certs_in(dir.path(), &[]).expect("certs");
    assert_eq!(
        written.names,
        vec![
            "meshguard.meshguard.svc",
            "meshguard.meshguard.svc.cluster.local",
            "meshguard.meshguard",
            "meshguard"
        ]
    );
    handshake(dir.path(), "meshguard.meshguard.svc").expect("default service name");
}

#[test]
fn existing_files_are_not_replaced_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs_in(dir.path(), &[]).expect("certs");
    let before = read(dir.path(), "ca.pem");
    let err = certs_in(dir.path(), &[]).unwrap_err().to_string();
    assert!(err.contains("already exists; pass --force"), "{err}");
    assert_eq!(read(dir.path(), "ca.pem"), before);
}

#[test]
fn bad_flags_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = certs_in(dir.path(), &["--namespace", "Prod"])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("--namespace: \"Prod\" is not a valid DNS label"),
        "{err}"
    );
    let err = certs_in(dir.path(), &["--days", "0"])
        .unwrap_err()
        .to_string();
    assert_eq!(err, "--days: must be between 1 and 36500, got 0");
    assert!(
        !dir.path().join("ca.pem").exists(),
        "nothing is written on error"
    );
}
