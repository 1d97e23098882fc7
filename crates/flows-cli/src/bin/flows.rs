//! The `flows` command: see `flows --help`.

// Training allocates and frees the same few buffer sizes every step; mimalloc reuses them
// without the page faults glibc's allocator takes on blocks near its mmap threshold.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = flows_cli::Cli::parse_with_defaults();
    if let Err(e) = flows_cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
