//! The floor: the bare minimum a pod start needs from the kernel and iproute2,
//! done by hand with the same tools the agent uses, in the same network namespace:
//! `ip netns add`, a veth pair with one end moved in (one `ip -batch`), addresses
//! and links up inside (one `ip -n NS -batch`), and a process spawned inside it
//! (`ip netns exec NS sh -c 'echo; exec sleep 3600'`), timed until that process
//! reports from inside the namespace.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The floor's addresses: a /24 no pod uses (the agent's pods are in 10.244.0.0/24).
const FLOOR_NET: [u8; 3] = [10, 245, 0];

/// One floor "pod": its namespace, host-side veth and process, removed on drop.
pub struct FloorPod {
    netns: String,
    veth: String,
    process: Option<Child>,
}

impl FloorPod {
    fn name(prefix: &str, i: usize) -> (String, String) {
        (format!("{prefix}-{i}"), format!("vfl{i}"))
    }

    /// Builds floor pod `i` and returns it with the time it took.
    pub async fn start(prefix: &str, i: usize) -> Result<(Self, Duration)> {
        let (netns, veth) = Self::name(prefix, i);
        // Host order: pod `i` gets .(i+2), wrapping inside the /24 (never .0, .1, .255).
        let host = u8::try_from(i % 250 + 2).context("floor address")?;
        let ip = Ipv4Addr::new(FLOOR_NET[0], FLOOR_NET[1], FLOOR_NET[2], host);
        let began = Instant::now();
        run("ip", &["netns", "add", &netns], None).await?;
        // From here on, drop removes what exists even if a later step fails.
        let mut pod = FloorPod {
            netns,
            veth,
            process: None,
        };
        let host_side = format!(
            "link add {v} type veth peer name eth0 netns {n}\nlink set {v} up\n",
            v = pod.veth,
            n = pod.netns
        );
        run("ip", &["-batch", "-"], Some(&host_side)).await?;
        let inside = format!(
            "link set lo up\naddr add {ip}/24 dev eth0\nlink set eth0 up\n\
             route add default via {}.{}.{}.1 dev eth0\n",
            FLOOR_NET[0], FLOOR_NET[1], FLOOR_NET[2]
        );
        run("ip", &["-n", &pod.netns, "-batch", "-"], Some(&inside)).await?;
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod.netns,
                "sh",
                "-c",
                "echo up; exec sleep 3600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("spawning the floor's process")?;
        let stdout = child.stdout.take().context("floor process stdout")?;
        pod.process = Some(child);
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await?;
        if line.trim() != "up" {
            bail!("the floor's process in {} did not start", pod.netns);
        }
        Ok((pod, began.elapsed()))
    }
}

impl Drop for FloorPod {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.start_kill();
        }
        // Deleting the namespace takes eth0 and with it the host end of the veth;
        // the explicit delete covers a namespace that was never made.
        for args in [
            vec!["link", "del", self.veth.as_str()],
            vec!["netns", "del", self.netns.as_str()],
        ] {
            let _ = std::process::Command::new("ip")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        stdin.write_all(input.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
