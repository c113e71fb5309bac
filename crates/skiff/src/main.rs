//! `skiff`: Kubernetes service networking in one binary. The wiring lives in
//! [`cli`]; each component lives in its own crate.

mod cli;
mod components;
mod images;
mod join;
mod token;

fn main() -> std::process::ExitCode {
    cli::main()
}
