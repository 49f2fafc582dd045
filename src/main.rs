use clap::Parser;

fn main() {
    let cli = perfsync::cli::Cli::parse();
    std::process::exit(perfsync::cli::run(cli));
}
