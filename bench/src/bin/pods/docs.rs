//! The image rows' tables and verdicts, and the whole docs section.

use std::time::Duration;

use skiff_bench::report::Table;
use skiff_bench::stats::{fmt_duration, Samples};

use crate::image_phase::ImageSamples;
use crate::measure::{ratio, rows, HostTables};
use crate::pods::Kind;
use crate::pull::PullSamples;
use crate::{Args, HEADING};

/// Issue 14's goals: image pod p99 at most this and at most `GOAL_RATIO` times
/// the floor's p99; a first pull at most `PULL_RATIO` times skopeo's.
const GOAL_P99: Duration = Duration::from_millis(150);
const GOAL_RATIO: f64 = 1.5;
const PULL_RATIO: f64 = 1.5;

/// The image rows as Markdown: the table, the stages, the verdicts.
pub struct ImageTables {
    pub table: String,
    pub stages: String,
    pub goals: Vec<String>,
}

fn x(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

pub fn image_tables(img: Option<&mut ImageSamples>, pull: Option<&mut PullSamples>) -> ImageTables {
    let mut t = Table::new(
        "image container",
        "skiff",
        "floor (same run)",
        "skiff ÷ floor",
    );
    let mut stages = Table::new("stage (from the create request)", "p50", "p99", "samples");
    let mut goals = Vec::new();
    if let Some(s) = img {
        let n = s.pods;
        rows(
            &mut t,
            &format!("cached image, create → Ready vs `runc run -d` ({n})"),
            &mut s.ready,
            &mut s.floor_run,
        );
        rows(
            &mut t,
            &format!("cached image, create → port 80 accepts vs `runc run -d` → listening ({n})"),
            &mut s.serving,
            &mut s.floor_serving,
        );
        let stage = |st: &mut Table, what: &str, v: &mut Samples| {
            st.row(
                what,
                fmt_duration(v.p50()),
                fmt_duration(v.p99()),
                v.len().to_string(),
            );
        };
        stage(
            &mut stages,
            "image pod: create request answered",
            &mut s.created,
        );
        stage(
            &mut stages,
            "image pod: watch shows spec.nodeName",
            &mut s.scheduled,
        );
        stage(
            &mut stages,
            "image pod: watch shows Running and Ready",
            &mut s.ready,
        );
        stage(
            &mut stages,
            "image pod: port 80 accepts a connection",
            &mut s.serving,
        );
        stage(
            &mut stages,
            "floor: overlay mount + config.json (before runc)",
            &mut s.floor_bundle,
        );
        stage(
            &mut stages,
            "floor: `runc run -d` returned",
            &mut s.floor_run,
        );
        stage(
            &mut stages,
            "floor: `runc run -d` start → listening",
            &mut s.floor_serving,
        );
        // The agent reports Running once runc has created the container (its
        // pid file is written), as `runc run -d` returns once it has created and
        // started it: the measure. Serving is shown beside it.
        let (p99, floor) = (s.ready.p99(), s.floor_run.p99());
        let r = x(p99, floor);
        let (sp99, sfloor) = (s.serving.p99(), s.floor_serving.p99());
        goals.push(format!(
            "Goal (issue 14), cached image create → Ready p99 ≤ {} and ≤ {GOAL_RATIO}× the \
             floor's p99: **{}** (p99 {}, {r:.2}× `runc run -d`'s {}). Until port 80 accepts \
             a connection: p99 {}, {:.2}× the floor's `runc run -d` → listening {}.",
            fmt_duration(GOAL_P99),
            verdict(p99 <= GOAL_P99 && r <= GOAL_RATIO),
            fmt_duration(p99),
            fmt_duration(floor),
            fmt_duration(sp99),
            x(sp99, sfloor),
            fmt_duration(sfloor),
        ));
    }
    if let Some(p) = pull {
        let mb = p.bytes as f64 / 1e6;
        let n = p.rounds;
        let (a, b) = (p.skiff.p50(), p.skopeo.p50());
        let what =
            format!("first pull, {mb:.1} MB over loopback: `ImageStore::pull` vs `skopeo copy`");
        t.row(
            format!("{what}, median of {n}"),
            fmt_duration(a),
            fmt_duration(b),
            ratio(a, b),
        );
        t.row(
            format!("{what}, fastest of {n}"),
            fmt_duration(p.skiff.percentile(0.0)),
            fmt_duration(p.skopeo.percentile(0.0)),
            ratio(p.skiff.percentile(0.0), p.skopeo.percentile(0.0)),
        );
        t.row(
            format!("{what}, median of the {n} rounds' ratios"),
            String::new(),
            String::new(),
            format!("{:.2}×", median(&p.ratios)),
        );
        let r = x(a, b);
        goals.push(format!(
            "Goal (issue 14), a first pull of a 50 MB image (this run: {mb:.1} MB) over loopback within {PULL_RATIO}× \
             `skopeo copy`: **{}** ({r:.2}×, medians of {n} rounds: {} against {}; \
             {:.0} MB/s against {:.0} MB/s).",
            verdict(r <= PULL_RATIO),
            fmt_duration(a),
            fmt_duration(b),
            mb / a.as_secs_f64().max(1e-9),
            mb / b.as_secs_f64().max(1e-9),
        ));
    }
    ImageTables {
        table: t.markdown(),
        stages: if stages.rows.is_empty() {
            String::new()
        } else {
            stages.markdown()
        },
        goals,
    }
}

/// What is printed at the end of a run: every table and verdict.
pub fn printed(host: Option<&HostTables>, img: &ImageTables) -> String {
    let mut out = String::new();
    if let Some(h) = host {
        out.push_str(&format!("{}\n{}\n{}\n\n", h.table, h.stages, h.goal));
    }
    if !img.goals.is_empty() {
        out.push_str(&format!(
            "{}\n{}\n{}\n",
            img.table,
            img.stages,
            img.goals.join("\n\n")
        ));
    }
    out
}

/// The `## Pod start` section of `docs/benchmarks.md`.
pub fn section(args: &Args, host: Option<&HostTables>, img: &ImageTables) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "{HEADING}\n\n\
Command: `{cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other builds. The whole \
cluster (API server on SQLite, controllers with the scheduler, node agent) runs in the \
benchmark's process, inside a network namespace the benchmark made; the floor runs in \
the same namespace, interleaved with the pods. Only the ratios are meaningful.\n\n",
        cmd = args.command_line(),
    );
    if let Some(h) = host {
        out.push_str(&format!(
            "**Host programs** (the agent with `host_images`, the built-in catalog):\n\n\
{table}\n\
- skiff: a pod ({sleep}) created through the API with no `nodeName`, timed from the \
create request to the first watch event showing it `Running` with `Ready=True` (the \
scheduler binds it, the agent builds its sandbox, veth, address and container process \
and reports status). Pods of one phase stay up until the phase ends, then are deleted.\n\
- Readiness probe: {probed}, so Ready also waits for the first probe.\n\
- Floor: `ip netns add`, a veth pair with one end moved in (`ip -batch`), `lo` and \
`eth0` up with an address and a default route (`ip -n NS -batch`), and \
`ip netns exec NS sh -c 'echo up; exec sleep 3600'`, timed until the process has said \
`up` from inside. The burst floor starts as many at once.\n\n\
Where the time goes (pods one at a time):\n\n\
{stages}\n\
{goal}\n\n",
            table = h.table,
            stages = h.stages,
            goal = h.goal,
            sleep = Kind::Sleep.describe(),
            probed = Kind::Probed.describe(),
        ));
    }
    if !img.goals.is_empty() {
        out.push_str(&format!(
            "**Image containers** (a second cluster, its agent running real OCI images with \
runc, as `skiff server` does by default):\n\n\
{table}\n\
- Cached image: {image}. The test images (`tests/images/build`) are imported into the \
node's store before the agent starts. Each pod is timed from the create request to the \
first watch event showing it `Running` and `Ready` (the agent builds the sandbox while \
it fills the pod's projected service-account token volume, which the API server gives \
every pod as `skiff server` does: a `TokenRequest` and the `kube-root-ca.crt` \
ConfigMap; then it mounts an overlay over the image's layers, writes the runtime \
spec, starts `runc run` and reports once runc has created the container), and on to the first TCP connection to `podIP:80` that is accepted (retried \
every millisecond). Pods stay up until the phase ends.\n\
- Floor, interleaved pod by pod: the same image's bundle made with the agent's own \
functions (`container::mount_rootfs`, `oci::runtime_spec` with fresh namespaces instead \
of a sandbox's), then `runc run -d`, timed from its start until it returns (the \
container's process is started) and until `/proc/<pid>/net/tcp` shows the process \
listening on port 80 (polled every millisecond). The overlay mount and `config.json` \
come before the timed part and are given below.\n\
- First pull: `bench/pull-image` adds to the test images a busybox image with one more \
layer of fresh random bytes (gzipped by umoci, so as large on the wire); it is pushed \
with skopeo to Debian's `docker-registry` on `127.0.0.1` of the benchmark's namespace. \
Each round pulls it into an empty store with `ImageStore::pull` (download, both digests \
verified, layers unpacked for overlayfs: what the agent does) and copies it with \
`skopeo copy docker://… oci:DIR` into an empty directory (download and verify, blobs \
stored as they are), alternating which goes first, after one untimed round of each.\n\n\
{stages}\n\
{goals}\n",
            table = img.table,
            image = Kind::Image.describe(),
            stages = img.stages,
            goals = img.goals.join("\n\n"),
        ));
    }
    out
}
