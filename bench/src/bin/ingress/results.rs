//! The tables `bench/ingress` prints and records in `docs/benchmarks.md`.

use std::time::Duration;

use skiff_bench::report::grid;
use skiff_bench::stats::{fmt_duration, fmt_rate, thousands, Samples};

use crate::load::{Compared, Outcome};
use crate::route_change::Changes;
use crate::Args;

pub const HEADING: &str = "## Ingress (bench/ingress)";

/// The issue's goal for a route change going live.
const CHANGE_GOAL: Duration = Duration::from_millis(50);

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}x", a / b.max(1e-9))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// (docs section, printed text).
pub fn render(args: &Args, c: &Compared, changes: &Changes) -> (String, String) {
    let mut direct = c.direct.clone();
    let mut ingress = c.ingress.clone();
    let mut nginx = c.nginx.clone();
    let mut rows = vec![vec![
        "path".to_string(),
        "requests/s".into(),
        "p50".into(),
        "p99".into(),
        "requests".into(),
        "errors".into(),
    ]];
    for (name, o) in [
        ("direct to the pods", &mut direct),
        ("skiff ingress", &mut ingress),
        ("nginx (Debian) reverse proxy", &mut nginx),
    ] {
        rows.push(row(name, o));
    }
    let load = grid(&rows);

    let ratios = grid(&[
        vec![
            "ratio".to_string(),
            "requests/s (all rounds)".into(),
            "requests/s (median of rounds)".into(),
            "p99".into(),
        ],
        vec![
            "ingress ÷ direct".into(),
            ratio(ingress.rate(), direct.rate()),
            format!(
                "{:.2}x",
                median(c.round_ratios.iter().map(|r| r.0).collect())
            ),
            ratio(secs(ingress.latencies.p99()), secs(direct.latencies.p99())),
        ],
        vec![
            "ingress ÷ nginx".into(),
            ratio(ingress.rate(), nginx.rate()),
            format!(
                "{:.2}x",
                median(c.round_ratios.iter().map(|r| r.1).collect())
            ),
            ratio(secs(ingress.latencies.p99()), secs(nginx.latencies.p99())),
        ],
    ]);

    let mut skiff_changes = changes.ingress.clone();
    let mut nginx_changes = changes.nginx.clone();
    let verdict = if skiff_changes.p99() < CHANGE_GOAL {
        "met"
    } else {
        "not met"
    };
    let route = grid(&[
        vec![
            "route change, live".to_string(),
            "changes".into(),
            "p50".into(),
            "p99".into(),
            "max".into(),
        ],
        change_row(
            "skiff: Ingress PATCH answered -> first answer on the new path",
            &mut skiff_changes,
        ),
        change_row(
            "nginx: config rewritten + SIGHUP -> first answer on the new path",
            &mut nginx_changes,
        ),
    ]);

    let shape = c.shape.map_or(String::new(), |s| {
        format!(
            "{} keep-alive connections, {} s per path per round",
            s.connections,
            s.duration.as_secs_f64()
        )
    });
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let printed = format!(
        "{load}\n{ratios}\nroute change goal: skiff p99 < {} ({verdict})\n{route}",
        fmt_duration(CHANGE_GOAL)
    );
    let section = format!(
        "{HEADING}\n\n\
```sh\n{}\n```\n\n\
Run {date} on a machine with `nproc` = {nproc}, **shared with other work (busy: figures are \
noisy; rerun on a quiet machine before drawing conclusions)**. `skiff server` (API, controllers, \
agent, proxy, ingress; `--host-images`) runs in the benchmark's own network namespace; two \
Deployments of {} replicas each run a minimal keep-alive HTTP/1.1 server (this binary's `serve`, \
a host program); one Ingress (class `skiff`) routes `/a` and `/b` of host `bench.local` to them. \
Debian's nginx (`worker_processes auto`, an access log in its default (combined) format to a file, as skiff's ingress logs every request, an `upstream` per backend with \
`keepalive 128`) proxies the same paths to the same pod IPs. The load generator (hyper, HTTP/1.1, \
one thread; {shape}) sends `GET /a` with `Host: bench.local`; {} rounds, each loading the three \
paths one after another in a rotating order. \"direct\" spreads its connections over the echo-a \
pods.\n\n{load}\n{ratios}\n\
Route change: a new `Prefix` path to echo-b added to the Ingress by one merge patch, {} times \
(goal: p99 < {}: **{verdict}**); nginx takes the same change by a rewritten configuration and a \
reload.\n\n{route}",
        args.command_line(),
        args.replicas,
        c.rounds,
        thousands(skiff_changes.len() as u64),
        fmt_duration(CHANGE_GOAL),
    );
    (section, printed)
}

fn row(name: &str, o: &mut Outcome) -> Vec<String> {
    vec![
        name.to_string(),
        fmt_rate(o.rate()),
        fmt_duration(o.latencies.p50()),
        fmt_duration(o.latencies.p99()),
        thousands(o.requests),
        thousands(o.errors),
    ]
}

fn change_row(name: &str, s: &mut Samples) -> Vec<String> {
    vec![
        name.to_string(),
        thousands(s.len() as u64),
        fmt_duration(s.p50()),
        fmt_duration(s.p99()),
        fmt_duration(s.percentile(100.0)),
    ]
}
