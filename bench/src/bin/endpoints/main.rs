//! Placeholder: the `endpoints` benchmark is being written (see bench/README.md).

fn main() {
    eprintln!("the endpoints benchmark is not written yet");
    std::process::exit(2);
}
