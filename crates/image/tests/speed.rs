//! Not a timed test: `cargo test -p skiff-image --release --test speed -- --ignored --nocapture`
//! prints how long a first pull of a ~50 MB image over loopback takes beside
//! `skopeo copy` of the same image (which only downloads, not unpacks), in one run.

mod common;

use std::process::Command;
use std::time::Instant;

use common::{block_on, in_netns, Registry};
use skiff_image::{ImageStore, RegistryConfig};

#[test]
#[ignore]
fn pull_50mb_beside_skopeo() {
    in_netns("pull_50mb_beside_skopeo", || {
        let reg = Registry::start(5000, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let oci = dir.path().join("oci");
        // Half incompressible, half text, over many files: like a real image.
        let script = format!(
            r#"set -e
python3 - {d} <<'EOF'
import io, os, random, sys, tarfile
d = sys.argv[1]
random.seed(1)
def layer(name, files):
    with tarfile.open(f"{{d}}/{{name}}", "w") as t:
        for path, data in files:
            info = tarfile.TarInfo(path); info.size = len(data); info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
layer("a.tar", [(f"bin/blob{{i}}", random.randbytes(1 << 20)) for i in range(25)])
words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"skiff", b"image", b"layer"]
layer("b.tar", [(f"share/doc{{i}}.txt", b" ".join(random.choice(words) for _ in range(4200)))
                for i in range(1000)])
EOF
umoci init --layout {oci}
umoci new --image {oci}:big
umoci raw add-layer --image {oci}:big {d}/a.tar
umoci raw add-layer --image {oci}:big {d}/b.tar
skopeo copy --quiet --insecure-policy --dest-tls-verify=false oci:{oci}:big docker://{addr}/library/big:latest
"#,
            d = dir.path().display(),
            oci = oci.display(),
            addr = reg.addr
        );
        let st = Command::new("bash")
            .args(["-c", &script])
            .status()
            .expect("bash");
        assert!(st.success(), "building the big image");

        // Alternated and repeated: the machine's cores are shared, the best of each counts.
        let (mut skopeo, mut pull) = (f64::MAX, f64::MAX);
        let mut last = None;
        for round in 0..5 {
            let began = Instant::now();
            let st = Command::new("skopeo")
                .args([
                    "copy",
                    "--quiet",
                    "--insecure-policy",
                    "--src-tls-verify=false",
                ])
                .arg(format!("docker://{}/library/big:latest", reg.addr))
                .arg(format!(
                    "oci:{}:big",
                    dir.path().join(format!("copy{round}")).display()
                ))
                .status()
                .expect("skopeo");
            assert!(st.success());
            skopeo = skopeo.min(began.elapsed().as_secs_f64());

            let store = ImageStore::open(
                &dir.path().join(format!("store{round}")),
                RegistryConfig::default(),
            )
            .expect("open");
            let began = Instant::now();
            let img =
                block_on(store.pull(&format!("{}/library/big", reg.addr), &[])).expect("pull");
            pull = pull.min(began.elapsed().as_secs_f64());
            last = Some((img, store.list()[0].size));
        }
        let (img, size) = last.expect("ran");
        println!(
            "first pull of {:.1} MB ({} layers): skiff {pull:.3}s (with unpack), skopeo copy {skopeo:.3}s, ratio {:.2}",
            size as f64 / 1e6,
            img.layers.len(),
            pull / skopeo
        );
    });
}
