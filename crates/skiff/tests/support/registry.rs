//! A real image registry for e2e tests: Debian's `docker-registry` inside the
//! test's own network namespace on loopback, and a `registries.yaml` that mirrors
//! `docker.io` to it, so `--image=nginx` is pulled from images the tests built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{eventually, Background, Cluster, Netns};

/// Where the registry listens, inside the test's namespace.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// The registry process; killed by PID on drop.
pub struct Registry {
    _process: Background,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts `docker-registry` on [`REGISTRY`] in `ns`, storing under `storage`
/// (its config and log go to `dir`), and waits until it answers.
pub fn start_registry(ns: &Netns, storage: &Path, dir: &Path) -> Registry {
    start_registry_on(ns, REGISTRY, storage, dir)
}

/// [`start_registry`] listening on `addr` (`0.0.0.0:5000`: also on the bridge
/// other nodes of the namespace reach it by).
pub fn start_registry_on(ns: &Netns, addr: &str, storage: &Path, dir: &Path) -> Registry {
    std::fs::create_dir_all(storage).expect("registry dir");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        ),
    )
    .expect("registry config");
    let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
    let child = ns
        .command("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start docker-registry (apt-get install docker-registry)");
    let reg = Registry {
        _process: Background(child),
    };
    eventually(Duration::from_secs(20), || {
        let out = ns
            .command("curl")
            .args(["-sf", &format!("http://{REGISTRY}/v2/")])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    reg
}

/// A k3s-style `registries.yaml` in `dir` mirroring `docker.io` to [`REGISTRY`].
pub fn docker_io_mirror(dir: &Path) -> PathBuf {
    docker_io_mirror_to(dir, REGISTRY)
}

/// A `registries.yaml` in `dir` mirroring `docker.io` to `http://<addr>`.
pub fn docker_io_mirror_to(dir: &Path, addr: &str) -> PathBuf {
    let path = dir.join("registries.yaml");
    std::fs::write(
        &path,
        format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{addr}\"\n"),
    )
    .expect("registries.yaml");
    path
}

/// A full `skiff server` node named `node` in `ns` (beside a registry the
/// test started there) pulling `docker.io` images from that registry through
/// a mirror config written to `dir`; `disable` is its `--disable` list,
/// `extra` more flags.
pub fn image_node(ns: Netns, dir: &Path, node: &str, disable: &str, extra: &[&str]) -> Cluster {
    let mirror = docker_io_mirror(dir);
    let mut args = vec![
        "--disable",
        disable,
        "--node-name",
        node,
        "--registry-config",
        mirror.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    Cluster::start_with_images(ns, &args)
}

/// Runs an image script of `tests/images` (`build` or `standins`) with `args`,
/// in `ns` when given (pushing talks to the registry there).
pub fn run_image_script(ns: Option<&Netns>, script: &str, args: &[&std::ffi::OsStr]) {
    let path = repo_root().join("tests/images").join(script);
    let mut c = match ns {
        Some(ns) => ns.command(&path),
        None => Command::new(&path),
    };
    let out = c.args(args).output().expect("run an image script");
    assert!(
        out.status.success(),
        "tests/images/{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Registry storage holding the walkthroughs' stand-in images
/// (`tests/images/standins`) under their docker.io names. Built once and kept in
/// the target directory, rebuilt when the scripts or the catalog's programs
/// change; each test serves it with a registry of its own.
pub fn standin_storage() -> &'static Path {
    static STORAGE: OnceLock<PathBuf> = OnceLock::new();
    STORAGE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standin-images");
        let storage = root.join("registry");
        let stamp = root.join("stamp");
        let want = inputs_digest();
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
            return storage;
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("standin dir");
        let ns = Netns::new();
        let registry = start_registry(&ns, &storage, &root);
        let out = root.join("build");
        run_image_script(
            Some(&ns),
            "standins",
            &["--push".as_ref(), REGISTRY.as_ref(), out.as_os_str()],
        );
        drop(registry);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::write(&stamp, want).expect("stamp");
        storage
    })
}

/// What the stand-ins are made of, as a string that changes when they would:
/// the scripts and the catalog's programs, byte for byte.
fn inputs_digest() -> String {
    let root = repo_root();
    let mut files = vec![
        root.join("tests/images/build"),
        root.join("tests/images/standins"),
    ];
    let mut catalog: Vec<PathBuf> = std::fs::read_dir(root.join("crates/agent/catalog"))
        .expect("catalog dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    catalog.sort();
    files.extend(catalog);
    let mut text = String::new();
    for f in files {
        let bytes = std::fs::read(&f).expect("read an image input");
        text.push_str(&format!("{} {:016x}\n", f.display(), fnv1a(&bytes)));
    }
    text
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
