//! The built-in image catalog: what a container runs when its image is not a real
//! image (there is no container engine). Held as data: each image has an
//! entrypoint and a default command, combined with the pod's `command`/`args` as a
//! container runtime combines them with an image's ENTRYPOINT/CMD. A JSON file
//! (`{"image": {"entrypoint": [...], "cmd": [...]}}`) extends or overrides it.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

const PYTHON: &str = "/usr/bin/python3";

/// `traefik/whoami`: who am I, which addresses, and the request as received.
const WHOAMI: &str = include_str!("../catalog/whoami.py");

/// `bretfisher/httpenv`: the environment as JSON on :8888.
const HTTPENV: &str = include_str!("../catalog/httpenv.py");

/// `nginx`: the welcome page on :80, and an access log on stdout.
const NGINX: &str = include_str!("../catalog/nginx.py");

/// `postgres`: Debian's PostgreSQL server, one cluster per container. The data
/// directory lives on a tmpfs mounted (over its parent) inside the pod's own mount
/// namespace, so every pod has its own and nothing outlives the pod. Like the official image, `postgres`
/// (or flags) as the command runs the server; anything else is run as given.
const POSTGRES: &str = include_str!("../catalog/postgres.sh");

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Image {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    images: HashMap<String, Image>,
}

fn script(src: &str) -> Image {
    Image {
        entrypoint: vec![
            PYTHON.into(),
            "-u".into(),
            "-c".into(),
            src.into(),
            "--".into(),
        ],
        cmd: vec![],
    }
}

fn tool(cmd: &[&str]) -> Image {
    Image {
        entrypoint: vec![],
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
    }
}

/// `docker.io/library/nginx:1.27@sha256:...` -> `nginx`.
pub fn normalize(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    // A tag is a ':' after the last '/' (a ':' before it is a registry port).
    let image = match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    };
    let image = image
        .strip_prefix("docker.io/")
        .or_else(|| image.strip_prefix("index.docker.io/"))
        .unwrap_or(image);
    let image = image.strip_prefix("library/").unwrap_or(image);
    image.to_string()
}

impl Default for Catalog {
    fn default() -> Self {
        let mut images = HashMap::new();
        images.insert("traefik/whoami".into(), script(WHOAMI));
        images.insert("containous/whoami".into(), script(WHOAMI));
        images.insert("bretfisher/httpenv".into(), script(HTTPENV));
        images.insert("jpetazzo/httpenv".into(), script(HTTPENV));
        images.insert("nginx".into(), script(NGINX));
        images.insert("nginxinc/nginx-unprivileged".into(), script(NGINX));
        for shell in [
            "busybox",
            "alpine",
            "ubuntu",
            "debian",
            "nicolaka/netshoot",
            "tutum/dnsutils",
            "registry.k8s.io/e2e-test-images/jessie-dnsutils",
            "registry.k8s.io/e2e-test-images/agnhost",
            "gcr.io/kubernetes-e2e-test-images/dnsutils",
            "infoblox/dnstools",
            "praqma/network-multitool",
            "wbitt/network-multitool",
            "radial/busyboxplus",
            "bretfisher/netshoot",
            "fischerjulian/nspct",
            "alpine/curl",
            "appropriate/curl",
        ] {
            images.insert(shell.into(), tool(&["sh"]));
        }
        images.insert(
            "curlimages/curl".into(),
            Image {
                entrypoint: vec!["curl".into()],
                cmd: vec!["--help".into()],
            },
        );
        images.insert("python".into(), tool(&["python3"]));
        images.insert("registry.k8s.io/pause".into(), tool(&["sleep", "infinity"]));
        images.insert(
            "postgres".into(),
            Image {
                entrypoint: vec!["sh".into(), "-c".into(), POSTGRES.into(), "postgres".into()],
                cmd: vec!["postgres".into()],
            },
        );
        // A shell pod meant to be attached to (`kubectl attach -ti shpod`).
        images.insert("bretfisher/shpod".into(), tool(&["bash", "-l"]));
        images.insert("jpetazzo/shpod".into(), tool(&["bash", "-l"]));
        Self { images }
    }
}

impl Catalog {
    /// The default catalog, extended by `file` when it exists.
    pub fn load(file: Option<&Path>) -> Self {
        let mut c = Self::default();
        if let Some(f) = file {
            match std::fs::read_to_string(f) {
                Ok(text) => match serde_json::from_str::<HashMap<String, Image>>(&text) {
                    Ok(extra) => {
                        for (k, v) in extra {
                            c.images.insert(normalize(&k), v);
                        }
                    }
                    Err(e) => tracing::warn!(file = %f.display(), error = %e, "bad image catalog"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "cannot read image catalog")
                }
            }
        }
        c
    }

    pub fn get(&self, image: &str) -> Option<&Image> {
        self.images.get(&normalize(image))
    }

    /// The argv a container runs: `command` replaces the entrypoint, `args`
    /// replace the default command (which a given `command` also drops). `Err`:
    /// the image is unknown and nothing was given to run.
    pub fn argv(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> Result<Vec<String>, String> {
        let known = self.get(image);
        if !command.is_empty() {
            let mut v = command.to_vec();
            v.extend(args.iter().cloned());
            return Ok(v);
        }
        match known {
            Some(img) => {
                let mut v = img.entrypoint.clone();
                if args.is_empty() {
                    v.extend(img.cmd.iter().cloned());
                } else {
                    v.extend(args.iter().cloned());
                }
                if v.is_empty() {
                    Err(format!("image {image:?} has no command to run"))
                } else {
                    Ok(v)
                }
            }
            None => Err(format!(
                "image {image:?} is not in skiff's built-in catalog and the container has no command; \
                 give it a command or add the image to the catalog"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names() {
        assert_eq!(normalize("docker.io/library/nginx:1.27"), "nginx");
        assert_eq!(normalize("nginx@sha256:abc"), "nginx");
        assert_eq!(normalize("localhost:5000/x/y"), "localhost:5000/x/y");
        assert_eq!(normalize("bretfisher/httpenv:latest"), "bretfisher/httpenv");
    }

    #[test]
    fn argv_rules() {
        let c = Catalog::default();
        assert_eq!(c.argv("busybox", &[], &[]).unwrap(), s(&["sh"]));
        assert_eq!(
            c.argv("busybox", &[], &s(&["sleep", "10"])).unwrap(),
            s(&["sleep", "10"])
        );
        assert_eq!(
            c.argv("whatever", &s(&["sh", "-c"]), &s(&["echo hi"]))
                .unwrap(),
            s(&["sh", "-c", "echo hi"])
        );
        assert_eq!(
            c.argv("curlimages/curl", &[], &s(&["-s", "x"])).unwrap(),
            s(&["curl", "-s", "x"])
        );
        let whoami = c
            .argv("traefik/whoami", &[], &s(&["--port", "8080"]))
            .unwrap();
        assert_eq!(whoami[0], PYTHON);
        assert_eq!(&whoami[whoami.len() - 2..], &s(&["--port", "8080"]));
        // The seeds' images.
        assert_eq!(
            c.argv("radial/busyboxplus:curl", &[], &[]).unwrap(),
            s(&["sh"])
        );
        assert_eq!(c.argv("nginx:alpine", &[], &[]).unwrap()[0], PYTHON);
        assert_eq!(
            c.argv("bretfisher/netshoot", &[], &s(&["bash"])).unwrap(),
            s(&["bash"])
        );
        let err = c.argv("example/unknown", &[], &[]).unwrap_err();
        assert!(err.contains("not in skiff's built-in catalog"), "{err}");
    }

    #[test]
    fn postgres_runs_the_server_or_the_given_program() {
        let c = Catalog::default();
        let server = c.argv("docker.io/library/postgres:16", &[], &[]).unwrap();
        assert_eq!(&server[..2], &s(&["sh", "-c"])[..]);
        assert_eq!(&server[3..], &s(&["postgres", "postgres"])[..]);
        let flags = c
            .argv("postgres", &[], &s(&["-c", "max_connections=20"]))
            .unwrap();
        assert_eq!(
            &flags[3..],
            &s(&["postgres", "-c", "max_connections=20"])[..]
        );
    }

    #[test]
    fn extended_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("images.json");
        std::fs::write(&f, r#"{"example/app:v1": {"cmd": ["sleep", "1"]}}"#).unwrap();
        let c = Catalog::load(Some(&f));
        assert_eq!(c.argv("example/app", &[], &[]).unwrap(), s(&["sleep", "1"]));
    }
}
