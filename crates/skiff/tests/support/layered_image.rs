//! Images a test makes for itself: files of this machine (a program built by
//! cargo with the shared libraries `ldd` names, a Python package tree, a script)
//! gathered in a directory, added as one layer over an image already in the
//! test's registry, and pushed back under a new name. The base is copied out
//! with skopeo, the layer added with `umoci raw add-layer`, as
//! tests/images/standins builds its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::registry::REGISTRY;
use super::Netns;

/// The root of a layer being put together.
pub struct Layer {
    root: PathBuf,
}

impl Layer {
    /// An empty layer rooted at `root` (created).
    pub fn new(root: &Path) -> Self {
        std::fs::create_dir_all(root).expect("layer dir");
        Self {
            root: root.to_path_buf(),
        }
    }

    /// `dest` (absolute, in the image) for `rel`.
    fn at(&self, dest: &str) -> PathBuf {
        let p = self.root.join(dest.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("layer parent dir");
        }
        p
    }

    /// Copies the file `src` (links followed) to `dest` in the image.
    pub fn copy_file(&self, src: &Path, dest: &str) {
        std::fs::copy(src, self.at(dest))
            .unwrap_or_else(|e| panic!("copy {} into the layer: {e}", src.display()));
    }

    /// Writes `contents` to `dest` in the image.
    pub fn write(&self, dest: &str, contents: &str) {
        std::fs::write(self.at(dest), contents).expect("write into the layer");
    }

    /// Copies the tree `src` to `dest` in the image, leaving out every entry
    /// named in `skip_names` (anywhere) and the paths in `skip_paths`
    /// (relative to `src`).
    pub fn copy_tree(&self, src: &Path, dest: &str, skip_names: &[&str], skip_paths: &[&str]) {
        let to = self.at(dest);
        copy_tree(src, &to, src, skip_names, skip_paths);
    }

    /// Adds every shared library the ELF files of the layer load (as `ldd`
    /// lists them, transitively), so they run whatever the base image holds.
    pub fn add_libraries(&self) {
        let mut elves = Vec::new();
        collect_elves(&self.root, &mut elves);
        for elf in elves {
            let out = Command::new("ldd").arg(&elf).output().expect("run ldd");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            for line in text.lines() {
                let lib = match line.split_once("=>") {
                    Some((_, rest)) => rest.split_whitespace().next(),
                    // The loader: "\t/lib64/ld-linux-x86-64.so.2 (0x...)".
                    None => line
                        .split_whitespace()
                        .next()
                        .filter(|p| p.starts_with('/')),
                };
                let Some(lib) = lib.filter(|l| l.starts_with('/')) else {
                    continue;
                };
                let dest = self.at(lib);
                if !dest.exists() {
                    self.copy_file(Path::new(lib), lib);
                }
            }
        }
    }

    /// The layer as an uncompressed tar of its top-level entries, owned by root.
    fn tar(&self, to: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(&self.root)
            .expect("layer dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        entries.sort();
        let out = Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
            .arg(&self.root)
            .arg("-cf")
            .arg(to)
            .arg("--")
            .args(entries)
            .output()
            .expect("run tar");
        assert!(
            out.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pushes `base` (a repository:tag in the registry of `ns`) with this layer on
    /// top as `dest`; `work` holds the OCI layout meanwhile.
    pub fn push_over(&self, ns: &Netns, base: &str, dest: &str, work: &Path) {
        std::fs::create_dir_all(work).expect("work dir");
        let tar = work.join("layer.tar");
        self.tar(&tar);
        let layout = work.join("oci");
        let base_ref = format!("oci:{}:base", layout.display());
        let image_ref = format!("{}:image", layout.display());
        run(ns.command("skopeo").args([
            "copy",
            "--quiet",
            "--insecure-policy",
            "--src-tls-verify=false",
            &format!("docker://{REGISTRY}/{base}"),
            &base_ref,
        ]));
        run(Command::new("umoci")
            .args([
                "raw",
                "add-layer",
                "--history.created_by",
                "crates/skiff/tests/support/layered_image.rs",
                "--image",
                &format!("{}:base", layout.display()),
                "--tag",
                "image",
            ])
            .arg(&tar));
        run(ns.command("skopeo").args([
            "copy",
            "--quiet",
            "--insecure-policy",
            "--dest-tls-verify=false",
            &format!("oci:{image_ref}"),
            &format!("docker://{REGISTRY}/{dest}"),
        ]));
    }
}

fn run(c: &mut Command) {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_tree(src: &Path, to: &Path, top: &Path, skip_names: &[&str], skip_paths: &[&str]) {
    let meta = std::fs::symlink_metadata(src).expect("stat a tree entry");
    if meta.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir in the layer");
        for e in std::fs::read_dir(src).expect("read a tree dir").flatten() {
            let name = e.file_name();
            let path = e.path();
            let rel = path.strip_prefix(top).unwrap_or(&path);
            if skip_names.iter().any(|s| name == **s)
                || skip_paths.iter().any(|s| rel == Path::new(s))
            {
                continue;
            }
            copy_tree(&path, &to.join(&name), top, skip_names, skip_paths);
        }
    } else if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).expect("readlink");
        std::os::unix::fs::symlink(target, to).expect("symlink in the layer");
    } else {
        std::fs::copy(src, to).expect("copy into the layer");
    }
}

fn collect_elves(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        let path = e.path();
        if t.is_dir() {
            collect_elves(&path, out);
        } else if t.is_file() {
            let mut magic = [0u8; 4];
            let is_elf = std::fs::File::open(&path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && magic == *b"\x7fELF";
            if is_elf {
                out.push(path);
            }
        }
    }
}
