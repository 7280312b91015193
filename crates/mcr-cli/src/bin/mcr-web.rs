//! `mcr-web`: the web UI of MCR, a gRPC client of `mcrsrv`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcr_cli::server::config::Config;

#[derive(Parser)]
#[command(name = "mcr-web", version = mcr_cli::VERSION, about = "The web UI of MCR")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the UI as the [web] section of the config file says
    /// (overridden by MCR_WEB_<KEY> variables).
    Server {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server { config } => {
                let config = Config::load(&config)?;
                mcr_cli::server::init_logging(config.log.level.as_deref());
                mcr_cli::server::web::server(&config.web_config()?).await
            }
        }
    })
}
