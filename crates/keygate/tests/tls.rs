//! `serve --tls-cert --tls-key`: HTTPS from the real binary to a real TLS
//! client, and a certificate replaced on SIGHUP without dropping the
//! connections already open.

use std::path::Path;
use std::time::Duration;

use keygate_testkit::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_keygate");

/// A self-signed certificate for 127.0.0.1, as PEM: (certificate, key).
fn certificate(name: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// A client that trusts `cert` alone, keeping its connections alive.
fn client(cert: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).expect("pem"))
        .tls_built_in_root_certs(false)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_replaced_on_sighup_without_dropping_connections() {
    let dir = tempfile::tempdir().expect("dir");
    let (first, first_key) = certificate("first");
    std::fs::write(dir.path().join("cert.pem"), &first).expect("cert");
    std::fs::write(dir.path().join("key.pem"), &first_key).expect("key");
    let server = ServerProcess::start(
        Path::new(BIN),
        "sqlite://keygate.db",
        dir.path(),
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem", "--header-read-timeout", "30"],
    );
    let https = server.base.replacen("http://", "https://", 1);
    assert!(
        server.log_text().contains(&format!("api={https}/")),
        "the log names https: {}",
        server.log_text()
    );

    let old = client(&first);
    let live = old.get(format!("{https}/livez")).send().await.expect("https");
    assert_eq!(live.status(), 200);
    assert_eq!(live.version(), reqwest::Version::HTTP_11);
    let plain = reqwest::get(format!("{}/livez", server.base)).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()), "plain HTTP is not served");

    // A broken pair is refused and the certificate in use stays.
    std::fs::write(dir.path().join("key.pem"), certificate("other").1).expect("mismatched key");
    server.signal("-HUP");
    server.wait_for_log("not reloaded", Duration::from_secs(5));
    assert_eq!(client(&first).get(format!("{https}/livez")).send().await.expect("still first").status(), 200);

    let (second, second_key) = certificate("second");
    std::fs::write(dir.path().join("cert.pem"), &second).expect("cert");
    std::fs::write(dir.path().join("key.pem"), &second_key).expect("key");
    server.signal("-HUP");
    server.wait_for_log("TLS certificate and key reloaded", Duration::from_secs(5));
    assert_eq!(client(&second).get(format!("{https}/livez")).send().await.expect("second").status(), 200);
    assert!(
        client(&first).get(format!("{https}/livez")).send().await.is_err(),
        "a new connection gets the new one"
    );
    // The connection opened before the reload still serves.
    assert_eq!(old.get(format!("{https}/health")).send().await.expect("kept alive").status(), 200);
}

#[test]
fn a_bad_certificate_or_half_a_pair_stops_serve_with_what_to_fix() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").expect("cert");
    std::fs::write(dir.path().join("key.pem"), certificate("x").1).expect("key");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--database", "sqlite://keygate.db"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} served");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let bad = run(&["--tls-cert", "cert.pem", "--tls-key", "key.pem"]);
    assert!(bad.contains("--tls-cert cert.pem: holds no certificate"), "{bad}");
    let half = run(&["--tls-cert", "cert.pem"]);
    assert!(half.contains("--tls-key"), "{half}");
}
