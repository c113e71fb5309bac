//! Placeholder: the `pods` benchmark is being written (see bench/README.md).

fn main() {
    eprintln!("the pods benchmark is not written yet");
    std::process::exit(2);
}
