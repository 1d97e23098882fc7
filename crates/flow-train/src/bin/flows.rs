//! The `flows` command: see `flows --help`.

use clap::Parser;

fn main() {
    let cli = flow_train::cli::Cli::parse();
    if let Err(e) = flow_train::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
