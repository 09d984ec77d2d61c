//! Reads a config folder into a mesh snapshot, keeping the last good version of any file
//! that stops loading.
//!
//! A user edits files while the mesh runs. A half-written or wrong file must not take
//! traffic away: its errors are reported with `file:line`, and until it is fixed the
//! control plane keeps serving what that file held at its last good load. Only a file
//! that never loaded cleanly contributes just its good resources.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bosun_api::{Resource, Severity};
use bosun_model::{MeshSettings, Snapshot};

use crate::config_status::{ConfigStatus, ResourceSummary, unix_now};
use crate::folder_watch::is_yaml;
use crate::jwks::JwksCache;

/// A config folder and what each of its files held when it last loaded cleanly.
pub struct ConfigFolder {
    dir: PathBuf,
    last_good: BTreeMap<PathBuf, Vec<Arc<Resource>>>,
    /// Which file each resource came from in the previous load, so that on a new
    /// duplicate the resource already serving keeps serving.
    owners: HashMap<Named, Arc<Path>>,
    /// Each file's last parse, reused while the file is unchanged.
    parsed: HashMap<PathBuf, (FileStamp, FileLoad)>,
    /// The mesh config (`mesh.yaml`) as it last loaded cleanly.
    last_good_mesh: Option<MeshSettings>,
    /// The key sets of RequestAuthentications' `jwksUri`s.
    jwks: JwksCache,
}

/// What tells a file changed: a rename-over (how editors save) changes the inode, a write
/// in place changes the modification time or the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: std::time::SystemTime,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(file: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(file).ok()?;
        Some(Self {
            modified: metadata.modified().ok()?,
            len: metadata.len(),
            inode: metadata.ino(),
        })
    }
}

/// One load of the folder: the snapshot to serve and what to tell the user.
pub struct FolderLoad {
    pub snapshot: Arc<Snapshot>,
    pub resources: Vec<ResourceSummary>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl ConfigFolder {
    pub fn new(dir: PathBuf) -> Self {
        Self::with_jwks(dir, JwksCache::default())
    }

    /// A folder whose `jwksUri`s are fetched by `jwks`.
    pub fn with_jwks(dir: PathBuf, jwks: JwksCache) -> Self {
        Self {
            dir,
            last_good: BTreeMap::new(),
            owners: HashMap::new(),
            parsed: HashMap::new(),
            last_good_mesh: None,
            jwks,
        }
    }

    /// Reads every YAML file of the folder again. Fails only when the folder itself
    /// cannot be read; problems inside files are reported in the result.
    pub fn reload(&mut self) -> io::Result<FolderLoad> {
        let started = std::time::Instant::now();
        let files = yaml_files(&self.dir)?;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut loaded: Vec<(PathBuf, Vec<Arc<Resource>>)> = Vec::new();
        for file in &files {
            let FileLoad {
                resources,
                errors: file_errors,
                warnings: file_warnings,
            } = self.load_file_cached(file);
            warnings.extend(file_warnings);
            if file_errors.is_empty() {
                self.last_good.insert(file.clone(), resources.clone());
                loaded.push((file.clone(), resources));
                continue;
            }
            errors.extend(file_errors);
            match self.last_good.get(file) {
                Some(previous) => {
                    errors.push(format!(
                        "{}: keeping its last good version ({} resources) until the errors above are fixed",
                        file.display(),
                        previous.len()
                    ));
                    loaded.push((file.clone(), previous.clone()));
                }
                None => loaded.push((file.clone(), resources)),
            }
        }
        self.last_good.retain(|file, _| files.contains(file));
        self.parsed.retain(|file, _| files.contains(file));

        let parsed = started.elapsed();
        let resources = self.without_duplicates(loaded, &mut errors);
        warnings.extend(resources.iter().flat_map(|r| unsupported_warnings(r)));
        let checked = started.elapsed();
        let mesh = self.load_mesh(&mut errors, &mut warnings);
        let (snapshot, model_warnings) =
            bosun_model::build::build(resources.iter().map(|r| r.as_ref()));
        let uris = snapshot.request_authentications().jwks_uris();
        let fetched = self.jwks.resolve(&uris, &mut warnings);
        let snapshot = snapshot.with_mesh(mesh).with_fetched_jwks(fetched);
        warnings.extend(snapshot.custom_policy_problems());
        tracing::debug!(
            parse_ms = parsed.as_millis() as u64,
            check_ms = (checked - parsed).as_millis() as u64,
            model_ms = (started.elapsed() - checked).as_millis() as u64,
            "folder read"
        );
        warnings.extend(model_warnings);
        Ok(FolderLoad {
            snapshot: Arc::new(snapshot),
            resources: resources.iter().map(|r| summary(r)).collect(),
            errors,
            warnings,
        })
    }

    /// Whether the config names key sets to fetch (`jwksUri`).
    pub fn names_key_sets(&self) -> bool {
        !self.jwks.is_empty()
    }

    /// Makes the next reload fetch every key set again.
    pub fn expire_key_sets(&mut self) {
        self.jwks.expire();
    }

    /// The folder's `mesh.yaml` (Istio's defaults without one). A file that stops loading
    /// keeps its last good settings serving, as any other file does.
    fn load_mesh(&mut self, errors: &mut Vec<String>, warnings: &mut Vec<String>) -> MeshSettings {
        let file = self.dir.join(bosun_api::mesh::MESH_CONFIG_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.last_good_mesh = None;
                return MeshSettings::default();
            }
            Err(error) => {
                errors.push(format!("{}: {error}", file.display()));
                return self.last_good_mesh.clone().unwrap_or_default();
            }
        };
        match bosun_api::load_mesh_config(&text, &file) {
            Ok(loaded) => {
                warnings.extend(loaded.unsupported.iter().map(|field| {
                    format!(
                        "{}: MeshConfig: not supported yet: {field}; it is ignored",
                        file.display()
                    )
                }));
                let mesh = MeshSettings::from_config(&loaded.config);
                self.last_good_mesh = Some(mesh.clone());
                mesh
            }
            Err(error) => {
                errors.push(error.to_string());
                if self.last_good_mesh.is_some() {
                    errors.push(format!(
                        "{}: keeping its last good version until the error above is fixed",
                        file.display()
                    ));
                }
                self.last_good_mesh.clone().unwrap_or_default()
            }
        }
    }

    /// Loads a file, or reuses its last parse when the file has not changed since: with
    /// thousands of resources in a folder, an edit should cost the file it touched.
    fn load_file_cached(&mut self, file: &Path) -> FileLoad {
        let stamp = FileStamp::of(file);
        if let (Some(stamp), Some((cached_stamp, cached))) = (stamp, self.parsed.get(file))
            && stamp == *cached_stamp
        {
            return cached.clone();
        }
        let load = load_file(file);
        if let Some(stamp) = stamp {
            self.parsed
                .insert(file.to_path_buf(), (stamp, load.clone()));
        }
        load
    }

    /// Drops the second of two resources with the same kind, namespace and name, with an
    /// error naming both places. The one that served before wins; else the first by file.
    fn without_duplicates(
        &mut self,
        loaded: Vec<(PathBuf, Vec<Arc<Resource>>)>,
        errors: &mut Vec<String>,
    ) -> Vec<Arc<Resource>> {
        // Keyed by the resources themselves (no key is copied: 110k resources at 10k
        // services); each winner's file and its place in `kept`, which keeps file order.
        let mut winners: HashMap<Named, (Arc<Path>, usize)> = HashMap::new();
        let mut kept: Vec<Arc<Resource>> = Vec::new();
        for (file, resources) in loaded {
            let file: Arc<Path> = file.into();
            for resource in resources {
                let named = Named(Arc::clone(&resource));
                let Some((kept_file, slot)) = winners.get(&named) else {
                    winners.insert(named, (Arc::clone(&file), kept.len()));
                    kept.push(resource);
                    continue;
                };
                let (kept_file, slot) = (Arc::clone(kept_file), *slot);
                let serving = self.owners.get(&named);
                let newcomer_wins = serving == Some(&file) && serving != Some(&kept_file);
                let ignored = if newcomer_wins {
                    &kept[slot]
                } else {
                    &resource
                };
                errors.push(format!(
                    "{} is defined twice: at {} and at {}; ignoring the one at {} (rename or remove one)",
                    resource.reference(),
                    kept[slot].origin(),
                    resource.origin(),
                    ignored.origin(),
                ));
                if newcomer_wins {
                    winners.remove(&named);
                    winners.insert(named, (Arc::clone(&file), slot));
                    kept[slot] = resource;
                }
            }
        }
        self.owners = winners
            .into_iter()
            .map(|(named, (file, _))| (named, file))
            .collect();
        kept
    }
}

/// A resource, hashed and compared by what identifies it: kind, namespace and name.
#[derive(Debug, Clone)]
struct Named(Arc<Resource>);

impl Named {
    fn identity(&self) -> (&str, &str, &str) {
        let meta = self.0.meta();
        (self.0.kind(), &meta.namespace, &meta.name)
    }
}

impl PartialEq for Named {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Named {}

impl std::hash::Hash for Named {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

fn summary(resource: &Resource) -> ResourceSummary {
    let meta = resource.meta();
    ResourceSummary {
        kind: resource.kind().to_string(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        origin: resource.origin().to_string(),
    }
}

/// The YAML files of `dir`, sorted by name so loads are deterministic.
fn yaml_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && is_yaml(&path) && !bosun_api::mesh::is_mesh_config(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One file's resources that passed, its errors, and validation warnings.
#[derive(Clone)]
struct FileLoad {
    /// Shared, so reusing an unchanged file's parse copies no resource.
    resources: Vec<Arc<Resource>>,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// Loads and validates one file.
fn load_file(file: &Path) -> FileLoad {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            return FileLoad {
                resources: Vec::new(),
                errors: vec![format!("{}: {error}", file.display())],
                warnings: Vec::new(),
            };
        }
    };
    let loaded = bosun_api::load_str(&text, file);
    let mut errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let mut resources = Vec::new();
    let mut warnings = Vec::new();
    for resource in loaded.resources {
        let (refusals, notes): (Vec<_>, Vec<_>) = bosun_api::validate(&resource)
            .into_iter()
            .partition(|message| message.severity == Severity::Error);
        warnings.extend(notes.iter().map(ToString::to_string));
        if refusals.is_empty() {
            resources.push(Arc::new(resource));
        } else {
            errors.extend(refusals.iter().map(ToString::to_string));
        }
    }
    FileLoad {
        resources,
        errors,
        warnings,
    }
}

/// "not supported yet" messages for a resource this version accepts only in part.
fn unsupported_warnings(resource: &Resource) -> Vec<String> {
    // Named only when there is something to say: most resources have nothing.
    let subject = || format!("{} ({})", resource.reference(), resource.origin());
    if let Resource::Unsupported { .. } = resource {
        return vec![format!(
            "{}: not supported yet: kind {}; it is ignored",
            subject(),
            resource.kind()
        )];
    }
    bosun_api::unsupported_fields(resource)
        .into_iter()
        .map(|field| format!("{}: not supported yet: {field}; it is ignored", subject()))
        .collect()
}

impl FolderLoad {
    /// Logs errors and warnings once per load, so the terminal tells the story.
    pub fn log(&self) {
        for error in &self.errors {
            tracing::error!("{error}");
        }
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
        tracing::info!(
            resources = self.resources.len(),
            errors = self.errors.len(),
            warnings = self.warnings.len(),
            "config loaded"
        );
    }

    pub fn status(&self, generation: u64) -> ConfigStatus {
        ConfigStatus {
            generation,
            loaded_at: unix_now(),
            resources: self.resources.clone(),
            errors: self.errors.clone(),
            warnings: self.warnings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
";

    fn split(v1: u32, v2: u32) -> String {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {v1}
    - destination: {{host: reviews, subset: v2}}
      weight: {v2}
"
        )
    }

    fn weights(load: &FolderLoad) -> Vec<u32> {
        load.snapshot
            .routes_for(&bosun_model::Hostname::new(
                "reviews.default.svc.cluster.local",
            ))
            .map(|routes| {
                routes.http[0]
                    .destinations
                    .iter()
                    .map(|d| d.weight)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_broken_file_keeps_its_last_good_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("service.yaml"), SERVICE).expect("write");
        std::fs::write(dir.path().join("vs.yaml"), split(90, 10)).expect("write");
        let mut folder = ConfigFolder::new(dir.path().to_path_buf());
        let first = folder.reload().expect("load");
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(weights(&first), vec![90, 10]);

        let broken = split(50, 50).replace(
            "weight: 50\n    - destination",
            "weight: fifty\n    - destination",
        );
        std::fs::write(dir.path().join("vs.yaml"), broken).expect("write");
        let second = folder.reload().expect("load");
        assert_eq!(
            weights(&second),
            vec![90, 10],
            "the last good rules keep serving"
        );
        let errors = second.errors.join("\n");
        assert!(
            errors.contains("vs.yaml:10"),
            "file:line of the bad value: {errors}"
        );
        assert!(errors.contains("keeping its last good version"), "{errors}");

        std::fs::write(dir.path().join("vs.yaml"), split(50, 50)).expect("write");
        let fixed = folder.reload().expect("load");
        assert!(fixed.errors.is_empty(), "{:?}", fixed.errors);
        assert_eq!(weights(&fixed), vec![50, 50]);
    }

    #[test]
    fn mesh_yaml_sets_the_mesh_and_a_broken_one_keeps_the_last_good() {
        use bosun_model::OutboundPolicy;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("service.yaml"), SERVICE).expect("write");
        let mut folder = ConfigFolder::new(dir.path().to_path_buf());
        let defaults = folder.reload().expect("load");
        assert_eq!(defaults.snapshot.mesh().outbound, OutboundPolicy::AllowAny);

        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(
            &mesh,
            "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\naccessLogFile: /dev/stdout\n",
        )
        .expect("write");
        let registry_only = folder.reload().expect("load");
        assert!(
            registry_only.errors.is_empty(),
            "{:?}",
            registry_only.errors
        );
        assert_eq!(
            registry_only.snapshot.mesh().outbound,
            OutboundPolicy::RegistryOnly
        );
        assert_eq!(
            registry_only.resources.len(),
            1,
            "mesh.yaml holds no resource"
        );
        let warnings = registry_only.warnings.join("\n");
        assert!(
            warnings.contains("not supported yet: accessLogFile"),
            "{warnings}"
        );

        std::fs::write(&mesh, "outboundTrafficPolicy:\n  mode: SOMETIMES\n").expect("write");
        let broken = folder.reload().expect("load");
        assert_eq!(
            broken.snapshot.mesh().outbound,
            OutboundPolicy::RegistryOnly
        );
        let errors = broken.errors.join("\n");
        assert!(errors.contains("mesh.yaml:2"), "{errors}");
        assert!(errors.contains("keeping its last good version"), "{errors}");

        std::fs::remove_file(&mesh).expect("remove");
        let removed = folder.reload().expect("load");
        assert_eq!(removed.snapshot.mesh().outbound, OutboundPolicy::AllowAny);
    }

    #[test]
    fn a_new_duplicate_is_refused_and_the_serving_one_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b-service.yaml"), SERVICE).expect("write");
        std::fs::write(dir.path().join("b-vs.yaml"), split(90, 10)).expect("write");
        let mut folder = ConfigFolder::new(dir.path().to_path_buf());
        assert!(folder.reload().expect("load").errors.is_empty());

        // Sorts first, but the VirtualService of b-vs.yaml was serving already.
        std::fs::write(dir.path().join("a-vs.yaml"), split(0, 100)).expect("write");
        let load = folder.reload().expect("load");
        let errors = load.errors.join("\n");
        assert!(
            errors.contains("VirtualService default/reviews is defined twice"),
            "{errors}"
        );
        assert!(
            errors.contains("a-vs.yaml:1") && errors.contains("b-vs.yaml:1"),
            "{errors}"
        );
        assert_eq!(weights(&load), vec![90, 10]);
    }

    #[test]
    fn unsupported_fields_and_kinds_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let with_stat_prefix = split(90, 10).replace(
            "  - route:",
            "  - match: [{statPrefix: reviews}]\n    route:",
        );
        std::fs::write(dir.path().join("vs.yaml"), with_stat_prefix).expect("write");
        std::fs::write(
            dir.path().join("gw.yaml"),
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n",
        )
        .expect("write");
        let load = ConfigFolder::new(dir.path().to_path_buf())
            .reload()
            .expect("load");
        let warnings = load.warnings.join("\n");
        assert!(
            warnings.contains("not supported yet: spec.http[0].match[0].statPrefix"),
            "{warnings}"
        );
        assert!(
            warnings.contains("not supported yet: kind Gateway"),
            "{warnings}"
        );
        assert!(warnings.contains("vs.yaml:1"), "{warnings}");
    }
}
