//! Placeholder: the `proxy` benchmark is being written (see bench/README.md).

fn main() {
    eprintln!("the proxy benchmark is not written yet");
    std::process::exit(2);
}
