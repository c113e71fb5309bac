//! Placeholder: the `netpol` benchmark is being written (see bench/README.md).

fn main() {
    eprintln!("the netpol benchmark is not written yet");
    std::process::exit(2);
}
