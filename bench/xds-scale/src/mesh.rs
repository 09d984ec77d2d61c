//! Writes a generated mesh folder: `services` ServiceEntries, each selecting
//! `endpoints` WorkloadEntries, in files of 100 services.

use std::fmt::Write as _;
use std::path::Path;

pub const SERVICES_PER_FILE: usize = 100;
pub const PORT: u16 = 8080;

pub fn host(service: usize) -> String {
    format!("svc-{service}.bench.svc.cluster.local")
}

/// The cluster whose endpoints the incremental change touches.
pub fn changed_cluster() -> String {
    format!("outbound|{PORT}||{}", host(0))
}

fn file_name(file: usize) -> String {
    format!("services-{file:04}.yaml")
}

/// Writes every file; `generation` shifts the first endpoint of service 0, which is how
/// the incremental change is made (rewrite file 0 with the next generation).
///
/// With `mtls`, every WorkloadEntry names a service account (`svc-<n>`), so every cluster
/// carries Istio's auto mTLS sockets and every endpoint its `tlsMode`, as in a mesh of
/// sidecars.
pub fn write(dir: &Path, services: usize, endpoints: usize, mtls: bool) -> std::io::Result<()> {
    for file in 0..services.div_ceil(SERVICES_PER_FILE) {
        write_file(dir, file, services, endpoints, 0, mtls)?;
    }
    Ok(())
}

pub fn write_file(
    dir: &Path,
    file: usize,
    services: usize,
    endpoints: usize,
    generation: usize,
    mtls: bool,
) -> std::io::Result<()> {
    let mut yaml = String::new();
    let first = file * SERVICES_PER_FILE;
    for service in first..services.min(first + SERVICES_PER_FILE) {
        let _ = write!(
            yaml,
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{service}, namespace: bench}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {PORT}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: svc-{service}}}}}
",
            host = host(service)
        );
        for endpoint in 0..endpoints {
            let shift = if service == 0 && endpoint == 0 {
                generation
            } else {
                0
            };
            let index = service * endpoints + endpoint + shift;
            let _ = write!(
                yaml,
                "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: svc-{service}-{endpoint}, namespace: bench}}
spec:
  address: 10.{a}.{b}.{c}
  ports: {{http: {PORT}}}
  labels: {{app: svc-{service}, version: v1}}
{account}",
                a = (index >> 16) & 0xff,
                b = (index >> 8) & 0xff,
                c = index & 0xff,
                account = if mtls {
                    format!("  serviceAccount: svc-{service}\n")
                } else {
                    String::new()
                },
            );
        }
    }
    // Write aside and rename, as editors do, so the control plane never reads half a file.
    let path = dir.join(file_name(file));
    let aside = dir.join(format!(".{}.tmp", file_name(file)));
    std::fs::write(&aside, yaml)?;
    std::fs::rename(aside, path)
}

/// The label value that puts client `index` under Sidecar group `index % groups`.
pub fn group_of(index: usize, groups: usize) -> String {
    format!("g-{}", index % groups.max(1))
}

/// Writes `groups` Sidecars, each selecting its group's clients (label `group`) and
/// naming `scope` services as egress hosts: group `g` gets services `g * scope ..`, so
/// group 0 holds service 0, the one the incremental change moves.
pub fn write_sidecars(
    dir: &Path,
    services: usize,
    scope: usize,
    groups: usize,
) -> std::io::Result<()> {
    let mut yaml = String::new();
    for group in 0..groups {
        let hosts: Vec<String> = (0..scope)
            .map(|i| format!("bench/{}", host((group * scope + i) % services.max(1))))
            .collect();
        let _ = write!(
            yaml,
            "---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: group-{group}, namespace: bench}}
spec:
  workloadSelector: {{labels: {{group: g-{group}}}}}
  egress:
  - hosts: [{hosts}]
",
            hosts = hosts.join(", ")
        );
    }
    std::fs::write(dir.join("sidecars.yaml"), yaml)
}
