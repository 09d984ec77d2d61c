//! The reload loop: every change of the folder (and every key-set refresh) is loaded and
//! translated off the async workers, then handed to the ADS server. A reload that fails,
//! even by panicking, is reported in the config status and the log; the last good config
//! keeps serving and the next change is applied as usual. The loop ends only when the
//! folder watch or the ADS server is gone.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bosun_xds::Generator;
use bosun_xds::translate::MeshGenerator;
use tokio::sync::{mpsc, watch};

use crate::config_folder::{ConfigFolder, FolderLoad};
use crate::config_status::ConfigStatus;
use crate::identities::KnownIdentities;

/// What the loop updates on each good reload.
pub(crate) struct Reloads {
    pub folder: ConfigFolder,
    /// The generator now serving; the next one is built from it.
    pub previous: Arc<MeshGenerator>,
    pub status: Arc<ArcSwap<ConfigStatus>>,
    pub identities: Arc<ArcSwap<KnownIdentities>>,
    pub generators: watch::Sender<Arc<dyn Generator>>,
    pub jwks_refresh: Duration,
}

impl Reloads {
    pub async fn run(self, mut changed: mpsc::Receiver<()>) {
        let Self {
            mut folder,
            mut previous,
            status,
            identities,
            generators,
            jwks_refresh,
        } = self;
        let mut generation = 1;
        let mut refresh = tokio::time::interval(jwks_refresh);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        loop {
            // A change of the folder, or the time to fetch the key sets again.
            let refetch = tokio::select! {
                change = changed.recv() => match change {
                    Some(()) => false,
                    None => break,
                },
                _ = refresh.tick() => {
                    if !folder.names_key_sets() {
                        continue;
                    }
                    true
                }
            };
            // Parsing and translating a large mesh takes a while: off the async workers.
            let base = Arc::clone(&previous);
            let blocking = tokio::task::spawn_blocking(move || {
                let outcome = reload(&mut folder, refetch, &base);
                (folder, outcome)
            });
            let (returned, outcome) = match blocking.await {
                Ok(done) => done,
                // `reload` catches panics, so only a cancelled runtime gets here.
                Err(error) => {
                    tracing::error!(%error, "the config reload task ended");
                    return;
                }
            };
            folder = returned;
            let (load, generator) = match outcome {
                Ok(reloaded) => reloaded,
                Err(failure) => {
                    tracing::error!(%failure, "config reload failed; serving the last good config");
                    status.store(Arc::new(status.load().with_reload_failure(&failure)));
                    continue;
                }
            };
            load.log();
            identities.store(Arc::new(KnownIdentities::of(&load.snapshot)));
            generation += 1;
            status.store(Arc::new(load.status(generation)));
            let replaced = std::mem::replace(&mut previous, Arc::clone(&generator));
            if generators.send(generator).is_err() {
                return;
            }
            // Freeing a generation of a large mesh takes a while (~90 ms at 10k
            // services): not on an async worker, where streams would wait for it.
            tokio::task::spawn_blocking(move || drop(replaced));
        }
    }
}

/// Loads and translates the folder once. A panic is caught and returned as a failure:
/// the folder only caches what it read, and the next reload reads everything again.
fn reload(
    folder: &mut ConfigFolder,
    refetch: bool,
    base: &Arc<MeshGenerator>,
) -> Result<(FolderLoad, Arc<MeshGenerator>), String> {
    let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if refetch {
            folder.expire_key_sets();
        }
        folder.reload().map(|load| {
            let started = std::time::Instant::now();
            let generator = Arc::new(MeshGenerator::with_previous(
                Arc::clone(&load.snapshot),
                Some(base),
            ));
            tracing::debug!(
                translate_ms = started.elapsed().as_millis() as u64,
                "config translated"
            );
            (load, generator)
        })
    }));
    match attempt {
        Ok(Ok(reloaded)) => Ok(reloaded),
        Ok(Err(error)) => Err(format!("cannot read the config folder: {error}")),
        Err(panic) => Err(format!(
            "internal error while loading the folder ({}); please report it with the \
             control plane's log",
            panic_message(panic.as_ref())
        )),
    }
}

/// The text a panic was raised with.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
";

    async fn status_where(
        status: &ArcSwap<ConfigStatus>,
        what: &str,
        accept: impl Fn(&ConfigStatus) -> bool,
    ) -> Arc<ConfigStatus> {
        for _ in 0..500 {
            let now = status.load_full();
            if accept(&now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", status.load());
    }

    #[tokio::test]
    async fn a_failed_reload_is_reported_and_the_next_change_still_applies() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        std::fs::write(config.join("service.yaml"), SERVICE).unwrap();
        let mut folder = ConfigFolder::new(config.clone());
        let load = folder.reload().unwrap();
        let first = Arc::new(MeshGenerator::with_previous(
            Arc::clone(&load.snapshot),
            None,
        ));
        let status = Arc::new(ArcSwap::from_pointee(load.status(1)));
        let (generators, mut served) = watch::channel::<Arc<dyn Generator>>(first.clone());
        let (changed, changes) = mpsc::channel(1);
        let reloads = tokio::spawn(
            Reloads {
                folder,
                previous: first,
                status: Arc::clone(&status),
                identities: Arc::new(ArcSwap::from_pointee(KnownIdentities::of(&load.snapshot))),
                generators,
                jwks_refresh: Duration::from_secs(3600),
            }
            .run(changes),
        );
        served.mark_unchanged();

        // The folder disappears: the reload fails, nothing new is served, the status says so.
        std::fs::rename(&config, dir.path().join("gone")).unwrap();
        changed.send(()).await.unwrap();
        let failed = status_where(&status, "the failure", |s| !s.errors.is_empty()).await;
        assert_eq!(failed.generation, 1, "{failed:?}");
        assert!(
            failed.errors[0].starts_with("config reload failed: cannot read the config folder"),
            "{:?}",
            failed.errors
        );
        assert_eq!(
            failed.resources.len(),
            1,
            "the last good config is still listed"
        );
        assert!(!served.has_changed().unwrap());

        // It comes back: the next change is loaded and served, and the failure is gone.
        std::fs::rename(dir.path().join("gone"), &config).unwrap();
        changed.send(()).await.unwrap();
        let healed = status_where(&status, "the next reload", |s| s.generation == 2).await;
        assert!(healed.errors.is_empty(), "{:?}", healed.errors);
        assert!(served.has_changed().unwrap());
        assert!(!reloads.is_finished());
    }

    #[test]
    fn a_panic_becomes_a_failure_with_its_message() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "boom 7");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(3_u8)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "a panic without a message");
    }
}
