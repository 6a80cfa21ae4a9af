/// mimalloc rather than the system allocator: a verification allocates a
/// few small, short-lived buffers, and glibc's malloc and free showed as
/// about 7% of the server's CPU in a profile of `POST /verify`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keygate::cli::run()
}
