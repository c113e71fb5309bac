//! The OCI runtime spec (`config.json`) of an image container, and the rules that
//! turn an image's config plus a pod's container spec into what runs: argv, user,
//! capabilities, limits. Pure: no IO except reading the image's own `/etc/passwd`
//! and `/etc/group` in [`resolve_user`].
//!
//! The container joins the pod sandbox's network, IPC and UTS namespaces (so every
//! container of a pod shares `localhost`, as upstream) and gets its own mount, PID
//! and cgroup namespaces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    get_default_mounts, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// containerd's default capability set (what a container gets unless its
/// `securityContext.capabilities` says otherwise).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from a container, as containerd hides them.
const MASKED_PATHS: [&str; 9] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
];
const READONLY_PATHS: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/scsi",
];

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything the runtime spec is built from.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    /// `K=V`, in order; later entries win, as in a process environment.
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ResolvedUser,
    pub capabilities: BTreeSet<String>,
    pub no_new_privileges: bool,
    pub read_only_rootfs: bool,
    /// The merged overlay root filesystem.
    pub rootfs: PathBuf,
    /// The sandbox process whose network, IPC and UTS namespaces the container joins.
    pub sandbox_pid: u32,
    /// Relative to each cgroup hierarchy's root (see [`crate::cgroup`]).
    pub cgroups_path: String,
    /// CFS quota in µs per 100 ms period (`resources.limits.cpu`).
    pub cpu_quota: Option<i64>,
    /// Relative CPU weight (`resources.requests.cpu`, as kubelet's shares).
    pub cpu_shares: Option<u64>,
    pub mounts: Vec<BindMount>,
}

/// The user a container's process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The OCI runtime spec for `c`.
pub fn runtime_spec(c: &ContainerConfig) -> Result<Spec, String> {
    let err = |e: oci_spec::OciSpecError| format!("building the runtime spec: {e}");
    let caps: oci_spec::runtime::Capabilities = c
        .capabilities
        .iter()
        .filter_map(|name| serde_json::from_value::<Capability>(name.as_str().into()).ok())
        .collect();
    let user = UserBuilder::default()
        .uid(c.user.uid)
        .gid(c.user.gid)
        .additional_gids(c.user.additional_gids.clone())
        .build()
        .map_err(err)?;
    // Capabilities reach a non-root process only through the ambient set;
    // upstream leaves ambient empty, so a non-root user keeps none at exec.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(c.args.clone())
        .env(c.env.clone())
        .cwd(PathBuf::from(&c.cwd))
        .capabilities(capabilities)
        .no_new_privileges(c.no_new_privileges)
        .build()
        .map_err(err)?;
    let root = RootBuilder::default()
        .path(c.rootfs.clone())
        .readonly(c.read_only_rootfs)
        .build()
        .map_err(err)?;
    let joined = |ty, ns: &str| {
        LinuxNamespaceBuilder::default()
            .typ(ty)
            .path(PathBuf::from(format!("/proc/{}/ns/{ns}", c.sandbox_pid)))
            .build()
    };
    let own = |ty| LinuxNamespaceBuilder::default().typ(ty).build();
    let namespaces = vec![
        joined(LinuxNamespaceType::Network, "net").map_err(err)?,
        joined(LinuxNamespaceType::Ipc, "ipc").map_err(err)?,
        joined(LinuxNamespaceType::Uts, "uts").map_err(err)?,
        own(LinuxNamespaceType::Mount).map_err(err)?,
        own(LinuxNamespaceType::Pid).map_err(err)?,
    ];
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(q) = c.cpu_quota {
        cpu = cpu.quota(q).period(100_000u64);
    }
    if let Some(s) = c.cpu_shares {
        cpu = cpu.shares(s);
    }
    let resources = LinuxResourcesBuilder::default()
        .cpu(cpu.build().map_err(err)?)
        .build()
        .map_err(err)?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&c.cgroups_path))
        .resources(resources)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(err)?;
    let mut mounts: Vec<Mount> = get_default_mounts()
        .into_iter()
        // The cgroup tree of the node is not the container's business.
        .filter(|m| m.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    for m in &c.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if m.read_only {
            options.push("ro".into());
        }
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from(&m.destination))
                .typ("bind")
                .source(m.source.clone())
                .options(options)
                .build()
                .map_err(err)?,
        );
    }
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(root)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(err)?;
    // The builder starts from a default spec that names a hostname; the UTS
    // namespace is the sandbox's, and runc refuses a hostname without its own.
    spec.set_hostname(None);
    Ok(spec)
}

/// The argv a container runs, by Kubernetes' rules: `command` replaces the
/// image's Entrypoint (and drops its Cmd), `args` replace the Cmd.
pub fn container_argv(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
) -> Vec<String> {
    let mut v = if command.is_empty() {
        entrypoint.to_vec()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        v.extend(args.iter().cloned());
    } else if command.is_empty() {
        v.extend(cmd.iter().cloned());
    }
    v
}

/// The capability set from containerd's defaults and `securityContext.capabilities`
/// (`add`/`drop` name capabilities without the `CAP_` prefix; `ALL` drops or adds
/// every one).
pub fn capabilities(add: &[String], drop: &[String]) -> BTreeSet<String> {
    let full = |c: &str| {
        let c = c.to_ascii_uppercase();
        if c.starts_with("CAP_") {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    let mut set: BTreeSet<String> = if drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        BTreeSet::new()
    } else {
        let dropped: BTreeSet<String> = drop.iter().map(|d| full(d)).collect();
        DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !dropped.contains(c))
            .collect()
    };
    for a in add {
        if !a.eq_ignore_ascii_case("ALL") {
            set.insert(full(a));
        }
    }
    set
}

/// Resolves the image's `User` (`""`, `uid`, `uid:gid`, `name`, `name:group`) and
/// the pod's overrides against the image's own `/etc/passwd` and `/etc/group`, as
/// containerd does. `Err` is the message of a `CreateContainerConfigError`.
pub fn resolve_user(
    rootfs: &Path,
    image_user: &str,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    supplemental: &[i64],
) -> Result<ResolvedUser, String> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    // name:x:uid:gid:...
    let passwd_entry = |pred: &dyn Fn(&str, u32) -> bool| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (uid, gid) = (f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
            pred(f[0], uid).then(|| (f[0].to_string(), uid, gid))
        })
    };
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let (mut name, mut uid, mut gid) = (None, 0u32, 0u32);
    if !user_part.is_empty() {
        if let Ok(n) = user_part.parse::<u32>() {
            uid = n;
            if let Some((nm, _, g)) = passwd_entry(&|_, u| u == n) {
                name = Some(nm);
                gid = g;
            }
        } else {
            let (nm, u, g) = passwd_entry(&|nm, _| nm == user_part).ok_or_else(|| {
                format!("unable to find user {user_part}: no matching entries in passwd file")
            })?;
            name = Some(nm);
            uid = u;
            gid = g;
        }
    }
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.first() == Some(&g)).then(|| f.get(2)?.parse().ok())?
                })
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
    }
    if let Some(u) = run_as_user {
        uid = u32::try_from(u).map_err(|_| format!("runAsUser {u} is out of range"))?;
        // A uid given by the pod takes its primary group from the image's passwd.
        name = None;
        gid = passwd_entry(&|_, x| x == uid).map(|e| e.2).unwrap_or(0);
    }
    if let Some(g) = run_as_group {
        gid = u32::try_from(g).map_err(|_| format!("runAsGroup {g} is out of range"))?;
    }
    let mut additional: Vec<u32> = Vec::new();
    if let Some(n) = &name {
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.get(3).is_some_and(|m| m.split(',').any(|m| m == n)) {
                if let Some(g) = f.get(2).and_then(|g| g.parse().ok()) {
                    additional.push(g);
                }
            }
        }
    }
    for g in supplemental {
        if let Ok(g) = u32::try_from(*g) {
            additional.push(g);
        }
    }
    additional.retain(|g| *g != gid);
    additional.sort_unstable();
    additional.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// kubelet's `runAsNonRoot` check, before the user is resolved: a named image
/// user cannot be verified.
pub fn verify_non_root(
    image_user: &str,
    run_as_user: Option<i64>,
    pod: &str,
    container: &str,
) -> Result<(), String> {
    if let Some(u) = run_as_user {
        return if u == 0 {
            Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"
            ))
        } else {
            Ok(())
        };
    }
    let user = image_user.split(':').next().unwrap_or("");
    match user.parse::<u32>() {
        Ok(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
        )),
        Ok(_) => Ok(()),
        Err(_) if user.is_empty() => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
        )),
        Err(_) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Upstream's table ("Define a Command and Arguments for a Container").
    #[test]
    fn argv_table() {
        let ep = s(&["/ep-1"]);
        let cmd = s(&["foo", "bar"]);
        let cases: [(&[&str], &[&str], &[&str]); 4] = [
            (&[], &[], &["/ep-1", "foo", "bar"]),
            (&["/ep-2"], &[], &["/ep-2"]),
            (&[], &["zoo", "boo"], &["/ep-1", "zoo", "boo"]),
            (&["/ep-2"], &["zoo", "boo"], &["/ep-2", "zoo", "boo"]),
        ];
        for (command, args, want) in cases {
            assert_eq!(
                container_argv(&ep, &cmd, &s(command), &s(args)),
                s(want),
                "command {command:?} args {args:?}"
            );
        }
    }

    #[test]
    fn capability_sets() {
        let d = capabilities(&[], &[]);
        assert_eq!(d.len(), DEFAULT_CAPABILITIES.len());
        let c = capabilities(&s(&["NET_ADMIN"]), &s(&["KILL", "cap_chown"]));
        assert!(c.contains("CAP_NET_ADMIN"));
        assert!(!c.contains("CAP_KILL"));
        assert!(!c.contains("CAP_CHOWN"));
        let none = capabilities(&s(&["NET_BIND_SERVICE"]), &s(&["ALL"]));
        assert_eq!(none, ["CAP_NET_BIND_SERVICE".to_string()].into());
    }

    #[test]
    fn users_from_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\nstaff:x:50:\n",
        )
        .unwrap();
        let r = |u: &str, ru, rg, sup: &[i64]| resolve_user(dir.path(), u, ru, rg, sup);
        assert_eq!(r("", None, None, &[]).unwrap(), ResolvedUser::default());
        let app = r("app", None, None, &[]).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.additional_gids),
            (1000, 1000, vec![10])
        );
        assert_eq!(r("1000", None, None, &[]).unwrap().gid, 1000);
        assert_eq!(r("app:staff", None, None, &[]).unwrap().gid, 50);
        assert_eq!(r("4242:7", None, None, &[]).unwrap().uid, 4242);
        let pod = r("app", Some(2000), Some(3000), &[5]).unwrap();
        assert_eq!(
            (pod.uid, pod.gid, pod.additional_gids),
            (2000, 3000, vec![5])
        );
        assert!(r("nobody", None, None, &[])
            .unwrap_err()
            .contains("unable to find user nobody"));
    }

    #[test]
    fn non_root_checks() {
        assert!(verify_non_root("1000", None, "p", "c").is_ok());
        assert!(verify_non_root("", Some(5), "p", "c").is_ok());
        let e = verify_non_root("", None, "p", "c").unwrap_err();
        assert_eq!(
            e,
            "container has runAsNonRoot and image will run as root (pod: \"p\", container: c)"
        );
        assert!(verify_non_root("app", None, "p", "c")
            .unwrap_err()
            .contains("non-numeric user (app)"));
        assert!(verify_non_root("1000", Some(0), "p", "c").is_err());
    }

    #[test]
    fn spec_joins_the_sandbox() {
        let c = ContainerConfig {
            args: s(&["sh"]),
            env: s(&["A=1"]),
            cwd: "/".into(),
            user: ResolvedUser::default(),
            capabilities: capabilities(&[], &[]),
            no_new_privileges: true,
            read_only_rootfs: false,
            rootfs: "/r".into(),
            sandbox_pid: 42,
            cgroups_path: "/skiff/u/c/0".into(),
            cpu_quota: Some(50_000),
            cpu_shares: None,
            mounts: vec![BindMount {
                source: "/pod/hosts".into(),
                destination: "/etc/hosts".into(),
                read_only: false,
            }],
        };
        let v = serde_json::to_value(runtime_spec(&c).unwrap()).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/proc/42/ns/net"));
        assert!(ns
            .iter()
            .any(|n| n["type"] == "pid" && n.get("path").is_none()));
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert!(v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/etc/hosts" && m["type"] == "bind"));
        assert!(
            v.get("hostname").is_none(),
            "the UTS namespace is the sandbox's"
        );
    }
}
