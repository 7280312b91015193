//! `mcrctl`: the MCR admin CLI (see `mcr_cli::ctl`).

fn main() -> std::process::ExitCode {
    mcr_cli::ctl::main()
}
