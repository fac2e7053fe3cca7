//! The `portcullis` binary: parses the command line and hands over to the library.

/// jemalloc: per-request allocations are small and short-lived, and a gateway's memory
/// comes and goes with its connections. Its background threads give what a burst of
/// connections or event streams freed back to the system within seconds (decay of 10 s),
/// where mimalloc kept it until the worker that freed it allocated again.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Without them, freed pages go back only when a thread that holds them allocates
    // again, which an idle gateway's threads do not. The setting cannot fail on Linux
    // builds of jemalloc; where it does, memory is still freed, only later.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("jemalloc's background threads could not be started: {e}");
    }
    portcullis::cli::main()
}
