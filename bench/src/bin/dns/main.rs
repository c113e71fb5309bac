//! Placeholder: the `dns` benchmark is being written (see bench/README.md).

fn main() {
    eprintln!("the dns benchmark is not written yet");
    std::process::exit(2);
}
