//! Pulls from a real registry (Debian's `docker-registry`) on loopback inside a
//! network namespace each test makes: tags, digests, mirrors with rewrites,
//! platform selection, basic auth, and every failure a pod can meet.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{block_on, in_netns, layout_digest, layout_json, no_files_under, Registry};
use skiff_image::{ImageStore, PullError, RegistryConfig};

const PORT: u16 = 5000;

fn store(dir: &tempfile::TempDir, yaml: &str) -> ImageStore {
    let config = RegistryConfig::parse(yaml).expect("registries.yaml");
    ImageStore::open(&dir.path().join("images"), config).expect("open")
}

#[test]
fn pull_by_tag_and_by_digest() {
    in_netns("pull_by_tag_and_by_digest", || {
        let reg = Registry::start(PORT, None);
        reg.push_all();
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir, "");
        let r = format!("{}/library/busybox:latest", reg.addr);
        let img = block_on(s.pull(&r, &[])).expect("pull by tag");
        assert_eq!(img.reference, r);
        assert_eq!(img.digest, layout_digest("busybox"));
        assert_eq!(
            img.image_id(),
            format!("{}/library/busybox@{}", reg.addr, img.digest)
        );
        assert_eq!(img.config.cmd, vec!["sh".to_string()]);
        assert!(img.layers[0].join("bin/busybox").is_file());
        assert_eq!(
            std::fs::read_link(img.layers[0].join("bin/sh")).expect("applet link"),
            std::path::Path::new("busybox")
        );
        let passwd = std::fs::read_to_string(img.layers[0].join("etc/passwd")).expect("passwd");
        assert!(passwd.contains("app:x:1000:1000"));

        let by_digest = format!("{}/library/busybox@{}", reg.addr, img.digest);
        let again = block_on(s.pull(&by_digest, &[])).expect("pull by digest");
        assert_eq!(again.digest, img.digest);
        assert_eq!(again.layers, img.layers);
        assert!(s.get(&by_digest).is_some());
        assert_eq!(s.get(&r).map(|i| i.digest), Some(img.digest.clone()));
        assert!(s
            .get(&format!("{}/library/busybox:other", reg.addr))
            .is_none());

        // Image configs as the build script wrote them.
        let ep =
            block_on(s.pull(&format!("{}/library/entrypoint-test", reg.addr), &[])).expect("pull");
        assert_eq!(ep.config.entrypoint, ["/bin/echo", "ep"]);
        assert_eq!(ep.config.cmd, ["cmd1", "cmd2"]);
        assert_eq!(
            ep.config.env,
            ["FROM_IMAGE=1", "PATH=/usr/local/bin:/usr/bin:/bin"]
        );
        assert_eq!(ep.config.working_dir, "/work");
        assert_eq!(ep.config.user, "1000:1000");
        // The base layer is shared, stored once.
        assert_eq!(ep.layers[0], img.layers[0]);
        let httpd = block_on(s.pull(&format!("{}/library/httpd", reg.addr), &[])).expect("pull");
        assert_eq!(httpd.config.exposed_ports, ["80/tcp"]);
        assert!(httpd.config.cmd.is_empty());

        let list = s.list();
        assert_eq!(list.len(), 3);
        let bb = list
            .iter()
            .find(|i| i.digest == img.digest)
            .expect("listed");
        assert!(
            bb.references.contains(&r) && bb.references.contains(&by_digest),
            "{:?}",
            bb.references
        );
        assert!(bb.size > 1_900_000, "busybox is about 2 MB: {}", bb.size);
        assert!(
            s.disk_usage() < list.iter().map(|i| i.size).sum::<u64>(),
            "shared layers count once"
        );
    });
}

#[test]
fn concurrent_pulls_share_one_download() {
    in_netns("concurrent_pulls_share_one_download", || {
        let reg = Registry::start(PORT, None);
        reg.push_all();
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir, "");
        let r = format!("{}/library/httpd", reg.addr);
        let r2 = format!("{}/library/whiteout-test", reg.addr);
        let (a, b, c) =
            block_on(async { tokio::join!(s.pull(&r, &[]), s.pull(&r, &[]), s.pull(&r2, &[])) });
        let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
        assert_eq!(a, b);
        assert_eq!(a.layers[0], c.layers[0]);
        let layers = std::fs::read_dir(dir.path().join("images/layers/sha256"))
            .expect("layers")
            .count();
        // busybox base + www + whiteout-test's two.
        assert_eq!(layers, 4);
        assert!(no_files_under(&dir.path().join("images/tmp")));
    });
}

#[test]
fn mirror_for_docker_io_with_rewrites() {
    in_netns("mirror_for_docker_io_with_rewrites", || {
        let reg = Registry::start(PORT, None);
        reg.push_all();
        let dir = tempfile::tempdir().expect("tempdir");
        // The first endpoint is dead: the next is tried, like containerd.
        let yaml = format!(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:1\", \"http://{}\"]\n    rewrite:\n      \"^myorg/(.*)\": \"library/$1\"\n",
            reg.addr
        );
        let s = store(&dir, &yaml);
        let img = block_on(s.pull("busybox", &[])).expect("pull through the mirror");
        assert_eq!(img.reference, "docker.io/library/busybox:latest");
        assert_eq!(img.digest, layout_digest("busybox"));
        assert_eq!(
            img.image_id(),
            format!("docker.io/library/busybox@{}", img.digest)
        );
        assert!(s.get("busybox:latest").is_some());
        let h = block_on(s.pull("myorg/httpd", &[])).expect("rewritten");
        assert_eq!(h.reference, "docker.io/myorg/httpd:latest");
        assert_eq!(h.config.exposed_ports, ["80/tcp"]);
        // Not in the mirror, and docker.io itself is unreachable in here.
        let e = block_on(s.pull("nosuchimage", &[])).expect_err("missing");
        assert!(matches!(e, PullError::NotFound(_)), "{e:?}");
        assert!(
            e.to_string().starts_with(
                "failed to pull and unpack image \"docker.io/library/nosuchimage:latest\""
            ),
            "{e}"
        );
    });
}

#[test]
fn index_selects_this_platform() {
    in_netns("index_selects_this_platform", || {
        let reg = Registry::start(PORT, None);
        reg.push_all();
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir, "");
        let img = block_on(s.pull(&format!("{}/library/multiarch", reg.addr), &[])).expect("pull");
        assert_eq!(
            img.digest,
            layout_digest("busybox"),
            "the entry for this machine"
        );
        assert_eq!(img.config.cmd, ["sh"]);

        // An index with no entry for this machine.
        let httpd = layout_digest("httpd");
        let size = std::fs::metadata(common::images().join("oci/blobs/sha256").join(&httpd[7..]))
            .expect("manifest")
            .len();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": httpd,
                "size": size, "platform": {"architecture": "mips64", "os": "linux"}}]
        });
        push_manifest(
            &reg.addr,
            "library/httpd",
            "foreign",
            &serde_json::to_vec(&index).expect("json"),
            true,
        );
        let e = block_on(s.pull(&format!("{}/library/httpd:foreign", reg.addr), &[]))
            .expect_err("no platform");
        assert!(matches!(e, PullError::NoMatchingPlatform(_)), "{e:?}");
        assert!(
            e.to_string().contains("no match for platform in manifest"),
            "{e}"
        );
    });
}

#[test]
fn basic_auth_from_pull_secrets_and_registries_yaml() {
    in_netns("basic_auth_from_pull_secrets_and_registries_yaml", || {
        let reg = Registry::start(PORT, Some(("alice", "s3cret")));
        reg.push_with_creds("busybox", "alice:s3cret");
        let r = format!("{}/library/busybox", reg.addr);

        let dir = tempfile::tempdir().expect("tempdir");
        let anonymous = store(&dir, "");
        let e = block_on(anonymous.pull(&r, &[])).expect_err("401");
        assert!(matches!(e, PullError::Unauthorized(_)), "{e:?}");
        let wrong = format!(
            r#"{{"auths":{{"{}":{{"username":"alice","password":"nope"}}}}}}"#,
            reg.addr
        );
        let e = block_on(anonymous.pull(&r, &[wrong.into_bytes()])).expect_err("wrong password");
        assert!(matches!(e, PullError::Unauthorized(_)), "{e:?}");

        let secret = format!(
            r#"{{"auths":{{"http://{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.addr
        );
        let dir2 = tempfile::tempdir().expect("tempdir");
        let img = block_on(store(&dir2, "").pull(&r, &[secret.into_bytes()])).expect("pull secret");
        assert_eq!(img.digest, layout_digest("busybox"));

        let dir3 = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: s3cret\n",
            reg.addr
        );
        // A configs entry for a loopback host does not make it TLS: only `tls` does.
        block_on(store(&dir3, &yaml).pull(&r, &[])).expect("registries.yaml auth");
    });
}

#[test]
fn tampered_blob_is_a_digest_mismatch_and_leaves_nothing() {
    in_netns(
        "tampered_blob_is_a_digest_mismatch_and_leaves_nothing",
        || {
            let reg = Registry::start(PORT, None);
            reg.push_all();
            let manifest = layout_json(&layout_digest("httpd"));
            let layer = manifest["layers"][1]["digest"]
                .as_str()
                .expect("layer")
                .to_string();
            let path = reg.blob_data(&layer);
            let mut bytes = std::fs::read(&path).expect("blob");
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&path, bytes).expect("tamper");

            let dir = tempfile::tempdir().expect("tempdir");
            let s = store(&dir, "");
            let e = block_on(s.pull(&format!("{}/library/httpd", reg.addr), &[]))
                .expect_err("tampered");
            assert!(matches!(e, PullError::DigestMismatch(_)), "{e:?}");
            assert!(s.list().is_empty());
            assert!(s.get(&format!("{}/library/httpd", reg.addr)).is_none());
            assert!(no_files_under(&dir.path().join("images/tmp")));
            let layers: Vec<_> = std::fs::read_dir(dir.path().join("images/layers/sha256"))
                .expect("layers")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            let bad_diff = layout_json(manifest["config"]["digest"].as_str().expect("config"))
                ["rootfs"]["diff_ids"][1]
                .as_str()
                .expect("diff id")
                .trim_start_matches("sha256:")
                .to_string();
            assert!(
                !layers.iter().any(|l| l.to_string_lossy() == bad_diff),
                "the bad layer is not kept"
            );
        },
    );
}

#[test]
fn corrupt_gzip_layer() {
    in_netns("corrupt_gzip_layer", || {
        let reg = Registry::start(PORT, None);
        // A gzip header followed by garbage; its digest is right, its content is not.
        let mut layer = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        layer.extend((0..4096u32).map(|i| (i * 7919 % 251) as u8));
        push_one_layer_image(
            &reg.addr,
            "library/corrupt",
            &layer,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &sha256(b"whatever"),
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir, "");
        let e =
            block_on(s.pull(&format!("{}/library/corrupt", reg.addr), &[])).expect_err("corrupt");
        assert!(matches!(e, PullError::CorruptLayer(_)), "{e:?}");
        assert!(s.list().is_empty());
        assert!(no_files_under(&dir.path().join("images/layers")));
        assert!(no_files_under(&dir.path().join("images/tmp")));
    });
}

#[test]
fn full_disk_is_disk_full_and_leaves_nothing() {
    in_netns("full_disk_is_disk_full_and_leaves_nothing", || {
        let reg = Registry::start(PORT, None);
        // A tar of one 3 MiB file that does not compress, into a store on a 1 MiB
        // filesystem.
        let mut data = Vec::with_capacity(3 << 20);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while data.len() < 3 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "big", data.as_slice())
            .expect("tar");
        let layer = tar.into_inner().expect("tar");
        push_one_layer_image(
            &reg.addr,
            "library/big",
            &layer,
            "application/vnd.oci.image.layer.v1.tar",
            &sha256(&layer),
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).expect("images dir");
        // This process has a mount namespace of its own (in_netns): the tmpfs ends with it.
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&images)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mount a 1 MiB tmpfs");
        let s = store(&dir, "");
        let e = block_on(s.pull(&format!("{}/library/big", reg.addr), &[])).expect_err("full");
        assert!(matches!(e, PullError::DiskFull(_)), "{e:?}");
        assert!(e.to_string().contains("no space left on device"), "{e}");
        assert!(s.list().is_empty());
        assert!(no_files_under(&images.join("tmp")));
        assert!(no_files_under(&images.join("layers")));
        let _ = Command::new("umount").arg(&images).status();
    });
}

#[test]
fn unreachable_missing_and_invalid() {
    in_netns("unreachable_missing_and_invalid", || {
        let reg = Registry::start(PORT, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir, "");
        let began = Instant::now();
        let e = block_on(s.pull("127.0.0.1:1/library/busybox", &[])).expect_err("nothing listens");
        assert!(matches!(e, PullError::Unreachable(_)), "{e:?}");
        assert!(began.elapsed() < Duration::from_secs(10));
        // A name that resolves nowhere in this namespace (no DNS, no routes).
        let e = block_on(s.pull("registry.invalid/a/b:1", &[])).expect_err("no such host");
        assert!(matches!(e, PullError::Unreachable(_)), "{e:?}");

        let e =
            block_on(s.pull(&format!("{}/library/nope:1", reg.addr), &[])).expect_err("missing");
        assert!(matches!(e, PullError::NotFound(_)), "{e:?}");
        let want = format!("{}/library/nope:1: not found", reg.addr);
        assert!(e.to_string().ends_with(&want), "{e}");

        for bad in ["Busybox", "a b", "busybox:-x", "a/b@sha256:12"] {
            let e = block_on(s.pull(bad, &[])).expect_err("invalid");
            assert!(matches!(e, PullError::InvalidReference(_)), "{bad}: {e:?}");
        }
    });
}

#[test]
fn whiteouts_give_the_right_overlay_view() {
    in_netns("whiteouts_give_the_right_overlay_view", || {
        let reg = Registry::start(PORT, None);
        reg.push_all();
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir, "");
        let img =
            block_on(s.pull(&format!("{}/library/whiteout-test", reg.addr), &[])).expect("pull");
        let lower: Vec<String> = img
            .layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let merged = dir.path().join("merged");
        std::fs::create_dir(&merged).expect("mountpoint");
        // This test runs in its own mount namespace: the mount goes with it.
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lower.join(":")))
            .arg(&merged)
            .status()
            .expect("mount");
        assert!(status.success(), "mount overlay");
        let _unmount = Unmount(merged.clone());
        assert_eq!(
            std::fs::read_to_string(merged.join("data/keep")).expect("keep"),
            "keep\n"
        );
        assert!(!merged.join("data/gone").exists(), "whited out");
        assert_eq!(
            std::fs::read_to_string(merged.join("opq/new")).expect("new"),
            "new\n"
        );
        assert!(
            !merged.join("opq/old").exists(),
            "opaque dir hides the lower file"
        );
        assert!(
            !merged.join("opq/sub").exists(),
            "opaque dir hides the lower dir"
        );
        assert!(merged.join("bin/busybox").is_file());
    });
}

#[test]
fn gc_removes_only_unused_images() {
    in_netns("gc_removes_only_unused_images", || {
        let reg = Registry::start(PORT, None);
        reg.push_all();
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir, "");
        for name in ["busybox", "httpd", "whiteout-test"] {
            block_on(s.pull(&format!("{}/library/{name}", reg.addr), &[])).expect("pull");
        }
        let before = s.disk_usage();
        assert_eq!(
            s.gc(&HashSet::new(), before).expect("gc"),
            0,
            "already under the target"
        );
        let in_use: HashSet<String> = [format!("{}/library/httpd:latest", reg.addr)].into();
        let freed = s.gc(&in_use, 0).expect("gc");
        assert!(freed > 0);
        let left: Vec<Vec<String>> = s.list().into_iter().map(|i| i.references).collect();
        assert_eq!(
            left,
            vec![vec![format!("{}/library/httpd:latest", reg.addr)]]
        );
        let httpd = s.get(&format!("{}/library/httpd", reg.addr)).expect("kept");
        assert!(
            httpd.layers.iter().all(|l| l.is_dir()),
            "its layers, shared or not, are kept"
        );
        assert!(s.disk_usage() < before);
        assert!(s.get(&format!("{}/library/busybox", reg.addr)).is_none());
    });
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn oci_ref(addr: &str, repo: &str, tag: &str) -> oci_client::Reference {
    oci_client::Reference::with_tag(addr.to_string(), repo.to_string(), tag.to_string())
}

fn test_client(addr: &str) -> oci_client::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(vec![addr.to_string()]),
        ..Default::default()
    };
    oci_client::Client::try_from(config).expect("client")
}

/// Pushes `repo:latest`, an image of one `layer` (of `media_type`, its config
/// claiming `diff_id`) built by hand, for content no image tool would make.
fn push_one_layer_image(addr: &str, repo: &str, layer: &[u8], media_type: &str, diff_id: &str) {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": sha256(layer), "size": layer.len()}]
    });
    push_blob(addr, repo, config.as_bytes());
    push_blob(addr, repo, layer);
    push_manifest(
        addr,
        repo,
        "latest",
        &serde_json::to_vec(&manifest).expect("json"),
        false,
    );
}

fn push_blob(addr: &str, repo: &str, data: &[u8]) {
    let client = test_client(addr);
    let r = oci_ref(addr, repo, "latest");
    block_on(client.push_blob(&r, data.to_vec(), &sha256(data))).expect("push blob");
}

fn push_manifest(addr: &str, repo: &str, tag: &str, body: &[u8], index: bool) {
    let client = test_client(addr);
    let media = if index {
        "application/vnd.oci.image.index.v1+json"
    } else {
        "application/vnd.oci.image.manifest.v1+json"
    };
    let r = oci_ref(addr, repo, tag);
    block_on(client.push_manifest_raw(&r, body.to_vec(), http::HeaderValue::from_static(media)))
        .expect("push manifest");
}
