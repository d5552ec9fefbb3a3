fn main() {
    std::process::exit(quorumsign::cli::main());
}
