use clap::Parser;

fn main() {
    quiet_on_closed_stdout();
    let cli = wiberg_cli::Cli::parse();
    if let Err(err) = wiberg_cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// `wiberg ... | head` closes stdout early; Rust ignores SIGPIPE, so `println!` then panics.
/// Exit quietly with the shell's SIGPIPE status instead, as other Unix tools do. (Restoring
/// the default SIGPIPE handler would need `unsafe` libc calls; results are written to files
/// atomically, so nothing is lost by stopping here.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
