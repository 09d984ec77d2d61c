//! Generated meshes for tests and benchmarks: many services, each with its endpoints.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bosun_model::{Hostname, Protocol, Service, ServicePort, Snapshot, Workload};

/// `services` HTTP services on port 8080 in namespace `default`, named `svc-<i>`, each
/// selecting `endpoints` workloads. `moved` shifts the first endpoint of that service to
/// another address: the smallest change a mesh sees.
pub fn generated_mesh(services: usize, endpoints: usize, moved: Option<usize>) -> Snapshot {
    let mut by_host = BTreeMap::new();
    let mut workloads = Vec::new();
    for index in 0..services {
        let host = Hostname::new(&format!("svc-{index}.default.svc.cluster.local"));
        let selector = BTreeMap::from([("app".to_string(), format!("svc-{index}"))]);
        by_host.insert(
            host.clone(),
            Arc::new(Service {
                hostname: host,
                namespace: "default".to_string(),
                ports: vec![ServicePort {
                    number: 8080,
                    name: "http".to_string(),
                    protocol: Protocol::Http,
                    target_port: None,
                }],
                workload_selector: Some(selector.clone()),
                inline_endpoints: Vec::new(),
                resolution: Default::default(),
                origin: "generated".to_string(),
            }),
        );
        for replica in 0..endpoints {
            let serial = (index * endpoints + replica) as u32;
            let serial = if moved == Some(index) && replica == 0 {
                u32::MAX - serial
            } else {
                serial
            };
            let [_, b, c, d] = serial.to_be_bytes();
            workloads.push(Arc::new(Workload {
                name: format!("svc-{index}-{replica}"),
                namespace: "default".to_string(),
                address: IpAddr::V4(Ipv4Addr::new(10, b, c, d)),
                ports: BTreeMap::from([("http".to_string(), 8080)]),
                labels: selector.clone(),
                service_account: "default".to_string(),
                mutual_tls: false,
                weight: 1,
            }));
        }
    }
    Snapshot::new(by_host, workloads, BTreeMap::new(), BTreeMap::new())
}
