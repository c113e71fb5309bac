//! Test support: a fresh network + mount namespace per test (the test binary
//! re-executes itself under `unshare`), Debian's `docker-registry` on loopback
//! inside it, and the images `tests/images/build` makes. Nothing here talks to
//! an address outside the namespace; tests skip (pass, saying so) when not root.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const IN_NETNS: &str = "SKIFF_IMAGE_TEST_IN_NETNS";
const IMAGES: &str = "SKIFF_IMAGE_TEST_IMAGES";

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why tests that need the machine cannot run here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    for t in [
        "unshare",
        "umoci",
        "skopeo",
        "docker-registry",
        "python3",
        "ip",
    ] {
        if !have(t) {
            return Some(format!("{t} is not installed (scripts/deps)"));
        }
    }
    None
}

/// The OCI layout `tests/images/build` made, built once per test binary.
pub fn images() -> PathBuf {
    if let Some(p) = std::env::var_os(IMAGES) {
        return PathBuf::from(p);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            // Builds of test processes that have ended are removed.
            for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("skiff-images-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
            let out = tmp.join(format!("skiff-images-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&out);
            let status = Command::new(build_script())
                .arg(&out)
                .status()
                .expect("tests/images/build");
            assert!(status.success(), "tests/images/build failed");
            out
        })
        .clone()
}

pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/images/build")
}

/// Runs `body` inside a new network and mount namespace with only `lo` up. The
/// test binary re-executes itself under `unshare --net --mount` with only test
/// `name` selected; the namespaces end with that process.
pub fn in_netns(name: &str, body: impl FnOnce()) {
    if std::env::var_os(IN_NETNS).is_some() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(up.is_ok_and(|s| s.success()), "ip link set lo up");
        body();
        return;
    }
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping {name}: {why}");
        return;
    }
    let images = images();
    let exe = std::env::current_exe().expect("current exe");
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args([
            name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(IN_NETNS, "1")
        .env(IMAGES, &images)
        .status()
        .expect("unshare");
    assert!(status.success(), "{name} failed inside its namespace");
}

/// A `docker-registry` on 127.0.0.1:`port`, killed (by its PID) on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `auth`: a user and password the registry requires (htpasswd, bcrypt).
    pub fn start(port: u16, auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 5).expect("bcrypt");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            // It logs every 404 (skopeo probes blobs) at level error: keep that out of test output.
            .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("log file"))
            .spawn()
            .expect("docker-registry");
        let addr = format!("127.0.0.1:{port}");
        let registry = Registry {
            child,
            addr: addr.clone(),
            storage,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// Copies every test image to `library/NAME:latest`.
    pub fn push_all(&self) {
        let status = Command::new(build_script())
            .args(["--push", &self.addr])
            .arg(images())
            .status()
            .expect("tests/images/build --push");
        assert!(status.success(), "pushing the test images");
    }

    /// Copies one test image with credentials.
    pub fn push_with_creds(&self, name: &str, creds: &str) {
        let oci = images().join("oci");
        let status = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--insecure-policy",
                "--dest-tls-verify=false",
                "--dest-creds",
                creds,
            ])
            .arg(format!("oci:{}:{name}", oci.display()))
            .arg(format!("docker://{}/library/{name}:latest", self.addr))
            .status()
            .expect("skopeo");
        assert!(status.success(), "skopeo copy with credentials");
    }

    /// The path of a blob in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The manifest digest a tag has in the built OCI layout.
pub fn layout_digest(tag: &str) -> String {
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(images().join("oci/index.json")).expect("index.json"),
    )
    .expect("json");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .expect("tag in layout")
        .to_string()
}

/// A blob of the built OCI layout, parsed as JSON.
pub fn layout_json(digest: &str) -> serde_json::Value {
    let p = images()
        .join("oci/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(p).expect("blob")).expect("json")
}

/// A current-thread runtime for the async store calls.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Nothing but empty directories under `dir` (no half-unpacked leftovers).
pub fn no_files_under(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .all(|e| e.path().is_dir() && no_files_under(&e.path()))
        })
        .unwrap_or(true)
}
