//! The `portcullis` binary: parses the command line and hands over to the library.

/// jemalloc: per-request allocations are small and short-lived, and a gateway's memory
/// comes and goes with its connections. Its background threads (the `background_threads`
/// feature: on from the start) give what a burst of connections or event streams freed
/// back to the system within seconds (decay of 10 s), where mimalloc kept it until the
/// worker that freed it allocated again, which an idle gateway's workers do not.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
