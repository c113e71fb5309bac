//! `skiff`: Kubernetes service networking in one binary. The wiring lives in
//! [`cli`]; each component lives in its own crate.

mod agent;
mod balancer;
mod cli;
mod components;
mod embedded_etcd;
mod images;
mod join;
mod join_components;
mod kubeconfig;
mod node_flags;
mod server_join;
mod token;
mod up;

fn main() -> std::process::ExitCode {
    cli::main()
}
