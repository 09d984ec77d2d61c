//! Translation cost: one proxy's resources from a generated mesh, and a whole snapshot's
//! shared resources (what the control plane does once per config change).

use std::hint::black_box;
use std::sync::Arc;

use bosun_xds::testing::generated_mesh;
use bosun_xds::translate::{DEFAULT_TRUST_DOMAIN, MeshGenerator, generate};
use bosun_xds::{Generator, ProxyNode};
use criterion::{Criterion, criterion_group, criterion_main};

fn translate(c: &mut Criterion) {
    let node = ProxyNode::sidecar("127.0.0.1".parse().expect("ip"), "client", "default");
    for services in [100, 1000] {
        let snapshot = Arc::new(generated_mesh(services, 10, None));
        c.bench_function(&format!("translate/{services}-services/one-proxy"), |b| {
            b.iter(|| {
                black_box(
                    generate(&snapshot, &node, DEFAULT_TRUST_DOMAIN)
                        .clusters
                        .len(),
                )
            })
        });
        c.bench_function(&format!("translate/{services}-services/snapshot"), |b| {
            b.iter(|| black_box(MeshGenerator::new(Arc::clone(&snapshot))))
        });
        let generator = MeshGenerator::new(Arc::clone(&snapshot));
        c.bench_function(
            &format!("translate/{services}-services/encoded-per-proxy"),
            |b| b.iter(|| black_box(generator.generate_encoded(&node).clusters.len())),
        );
    }
}

criterion_group!(benches, translate);
criterion_main!(benches);
