/// See `quorumsign::runtime::mem`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(quorumsign::cli::main());
}
