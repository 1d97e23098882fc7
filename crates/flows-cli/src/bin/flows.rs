//! The `flows` command: see `flows --help`.

// Training allocates and frees the same few buffer sizes every step; mimalloc reuses them
// without the page faults glibc's allocator takes on blocks near its mmap threshold.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's C API (linked with the allocator above): `mi_option_set` and the index of
// `mi_option_purge_delay` in its option enum (15 in mimalloc 2 and 3).
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() {
    // Never hand freed memory back to the OS: a training step frees and reallocates the same
    // large buffers, and purged pages cost a page fault and zeroing each time they return
    // (residual flows ran 30% faster without it).
    // SAFETY: a plain setter of mimalloc's, called before any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = flows_cli::Cli::parse_with_defaults();
    if let Err(e) = flows_cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
