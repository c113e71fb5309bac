//! `import` of the images `tests/images/build` makes: as an OCI layout directory,
//! as a tar of one, and as a `docker save` archive written by skopeo. Needs root
//! (whiteouts, file owners); skipped otherwise.

mod common;

use std::collections::HashSet;
use std::process::Command;

use common::{images, layout_digest, missing_prerequisite};
use skiff_image::{ImageStore, RegistryConfig};

fn store(dir: &tempfile::TempDir) -> ImageStore {
    ImageStore::open(&dir.path().join("images"), RegistryConfig::default()).expect("open")
}

#[test]
fn import_oci_layout_dir_and_tar() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping: {why}");
        return;
    }
    let layout = images().join("oci");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let mut refs = s.import(&layout).expect("import layout");
    refs.sort();
    assert_eq!(
        refs,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/entrypoint-test:latest",
            "docker.io/library/httpd:latest",
            "docker.io/library/multiarch:latest",
            "docker.io/library/whiteout-test:latest",
        ]
    );
    let bb = s.get("busybox").expect("imported busybox");
    assert_eq!(bb.digest, layout_digest("busybox"));
    assert!(bb.layers[0].join("bin/busybox").is_file());
    // The index resolved to this machine's entry: busybox.
    assert_eq!(
        s.get("multiarch").map(|i| i.digest),
        Some(bb.digest.clone())
    );
    let ep = s
        .get("docker.io/library/entrypoint-test:latest")
        .expect("entrypoint-test");
    assert_eq!(ep.config.user, "1000:1000");

    // The same layout as a tar: nothing new to unpack, same digests.
    let tar = dir.path().join("layout.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    let dir2 = tempfile::tempdir().expect("tempdir");
    let s2 = store(&dir2);
    assert_eq!(s2.import(&tar).expect("import tar").len(), 5);
    assert_eq!(s2.get("busybox").map(|i| i.digest), Some(bb.digest));
    assert!(common::no_files_under(&dir2.path().join("images/tmp")));
}

#[test]
fn import_docker_archive() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("httpd.tar");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--insecure-policy"])
        .arg(format!("oci:{}:httpd", images().join("oci").display()))
        .arg(format!(
            "docker-archive:{}:example.com/web/httpd:1.0",
            archive.display()
        ))
        .status()
        .expect("skopeo");
    assert!(status.success(), "skopeo copy to docker-archive");
    let s = store(&dir);
    assert_eq!(
        s.import(&archive).expect("import"),
        ["example.com/web/httpd:1.0"]
    );
    let img = s.get("example.com/web/httpd:1.0").expect("imported");
    assert_eq!(img.config.exposed_ports, ["80/tcp"]);
    assert!(img
        .layers
        .last()
        .expect("layers")
        .join("www/index.html")
        .is_file());
    let listed = s.list();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].size > 1_900_000);

    // Removing it: nothing is in use, so everything goes.
    let freed = s.gc(&HashSet::new(), 0).expect("gc");
    assert!(freed > 1_900_000, "{freed}");
    assert!(s.list().is_empty());
    assert!(s.get("example.com/web/httpd:1.0").is_none());
    assert!(s.disk_usage() == 0, "{}", s.disk_usage());
}

#[test]
fn import_rejects_what_is_not_an_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(&dir);
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").expect("write");
    assert!(s.import(&junk).is_err());
    let empty = tempfile::tempdir().expect("tempdir");
    let e = s.import(empty.path()).expect_err("empty dir");
    assert!(e.to_string().contains("neither an OCI image layout"), "{e}");
    assert!(s.import(&dir.path().join("missing")).is_err());
}
