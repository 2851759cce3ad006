use clap::Parser;

fn main() {
    let cli = wiberg_cli::Cli::parse();
    if let Err(err) = wiberg_cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
