//! `mcrctl`: the admin CLI of MCR, over the admin REST API (default) or
//! gRPC (`--grpc ADDR`).
//!
//! Both transports implement one [`api::Api`]; the commands
//! ([`commands`]) do not know which one they talk to, and print what they
//! get as aligned tables ([`table`]) or, with `--json`, as the REST API's
//! JSON ([`model`]) — the same over either transport. Errors go to stderr
//! with what to do about them, and a non-zero exit code (1; 2 for a
//! command line clap refuses).
//!
//! Nothing is validated here that the server validates: names and values
//! go to the server as typed, or through the engine's own parsers.

mod api;
mod commands;
mod grpc;
mod model;
mod rest;
mod retention;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use rustls::{ClientConfig, RootCertStore};

use api::Failure;

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Administer an MCR registry over its REST or gRPC admin API.
#[derive(Debug, Parser)]
#[command(name = "mcrctl", version = crate::VERSION)]
pub struct Cli {
    /// Base URL of the registry's REST API.
    #[arg(long, global = true, env = "MCR_SERVER", default_value = "http://127.0.0.1:5000", value_name = "URL", help_heading = GLOBAL)]
    pub server: String,
    /// Use gRPC at this address (host:port, or https://host:port for TLS)
    /// instead of REST.
    #[arg(long, global = true, value_name = "ADDR", help_heading = GLOBAL)]
    pub grpc: Option<String>,
    /// Bearer token from `mcrctl login`.
    #[arg(long, global = true, env = "MCR_TOKEN", hide_env_values = true, help_heading = GLOBAL)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the registry's certificate (trusted
    /// besides the public roots); with --grpc, turns TLS on.
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Whether the registry answers (needs no token).
    Status,
    /// Log in and print a token for --token or MCR_TOKEN.
    Login {
        #[arg(long)]
        username: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Repository count, stored bytes, the latest pushes and (for admins)
    /// garbage collection, as the web UI's dashboard shows them.
    Dashboard,
    /// Repositories.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Policy rules (admin).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit log (admin).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Garbage collection (admin): start a run, `gc status`, or
    /// `gc --reconcile`.
    Gc(GcArgs),
    /// Retention policies (admin): list, create, delete, run (with
    /// --dry-run to see what a run would delete), status.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Copy the database, consistently and online, into
    /// <database dir>/backups/mcr-YYYYMMDD-HHMMSS.db on the server host
    /// (admin); prints the copy's path there.
    Snapshot,
    /// The pull-through cache (admin).
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Storage quotas (admin): a byte limit per repository or namespace.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Webhook events (admin): delivery state and the outbox.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Print a completion script for a shell, e.g.
    /// `mcrctl completions bash > /etc/bash_completion.d/mcrctl`
    /// (needs no server).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Every mirror ([[proxy]]) with its upstream, hits and misses since
    /// the server started, cached repositories and bytes.
    List,
    /// Drop one mirrored repository's cache (its tags, manifests and
    /// layer links, e.g. `hub/library/alpine`): the next `mcrctl gc`
    /// frees the layers no other repository uses, the next pull fetches
    /// from the upstream again.
    Drop { name: String },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Every configured webhook (URL without credentials) with the last
    /// event delivered, events pending, failed attempts, the last error
    /// and the next attempt.
    Status,
    /// The outbox's events after an id, oldest first.
    List {
        /// Only events after this id.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Every quota with its limit and what its scope uses now.
    List,
    /// Set the quota of a repository (`team-a/app`) or a namespace
    /// (`team-a/`, ending in '/'): pushes that would take it past LIMIT
    /// are refused. LIMIT is bytes or a size like 10GiB or 500MB.
    Set { scope: String, limit: String },
    /// Delete a quota by its id (from `mcrctl quota list`).
    Delete { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Every repository you may pull, with its tag and manifest counts,
    /// size and last push.
    List {
        /// Only names containing this.
        #[arg(long)]
        filter: Option<String>,
        /// name, tags, manifests, size or last_push.
        #[arg(long, default_value = "name")]
        sort: String,
        /// Largest first.
        #[arg(long)]
        desc: bool,
    },
    /// Tags, manifests and layers of a repository.
    Show { name: String },
    /// One manifest: its JSON, config, layers, the platforms of an index
    /// and its referrers.
    Manifest {
        name: String,
        /// A tag or a digest.
        reference: String,
    },
    /// Delete a repository with its tags and manifests (admin); layers
    /// are freed by the next `mcrctl gc`.
    Delete {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Every rule in force, by priority: the built-in rules (marked, not
    /// changeable) and the stored ones.
    List,
    /// One rule.
    Show { id: i64 },
    /// Create a rule from flags or from --body JSON.
    Create {
        #[command(flatten)]
        flags: RuleFlags,
        /// The rule as JSON (as POST /v1/policy/rules takes it); `-` reads
        /// standard input, `@FILE` a file.
        #[arg(long, value_name = "JSON", conflicts_with = "RuleFlags")]
        body: Option<String>,
    },
    /// Change the given fields of a rule.
    Update {
        id: i64,
        #[command(flatten)]
        flags: RuleFlags,
        /// Remove the subject (the rule then matches every subject).
        #[arg(long, conflicts_with = "subject")]
        clear_subject: bool,
        /// The changes as JSON (as PATCH /v1/policy/rules/ID takes them);
        /// `-` reads standard input, `@FILE` a file.
        #[arg(long, value_name = "JSON", conflicts_with_all = ["RuleFlags", "clear_subject"])]
        body: Option<String>,
    },
    /// Delete a rule.
    Delete { id: i64 },
    /// Which rules match a principal doing an action, and the decision.
    Explain {
        #[arg(long)]
        subject: String,
        /// human or system.
        #[arg(long)]
        account_type: String,
        /// admin, user or guest (repeat, or separate with commas).
        #[arg(long = "role", value_delimiter = ',', value_name = "ROLE")]
        roles: Vec<String>,
        /// e.g. registry:pull, registry:push, policy:manage,
        /// registry:tag_overwrite.
        #[arg(long)]
        action: String,
        /// Leave out for a global operation such as the catalog.
        #[arg(long)]
        repository: Option<String>,
        /// The tag a tag action (registry:tag_overwrite,
        /// registry:tag_delete) is asked on.
        #[arg(long)]
        tag: Option<String>,
    },
}

/// The fields of a rule, each optional (for `update`).
#[derive(Debug, Default, Args)]
pub struct RuleFlags {
    /// 1 or more; lower is considered first.
    #[arg(long)]
    pub priority: Option<u32>,
    /// allow or deny.
    #[arg(long)]
    pub effect: Option<String>,
    /// e.g. registry:pull (repeat, or separate with commas).
    #[arg(long = "action", value_delimiter = ',', value_name = "ACTION")]
    pub actions: Vec<String>,
    /// admin, user or guest (repeat, or separate with commas).
    #[arg(long = "role", value_delimiter = ',', value_name = "ROLE")]
    pub roles: Vec<String>,
    /// human or system (repeat, or separate with commas).
    #[arg(long = "account-type", value_delimiter = ',', value_name = "TYPE")]
    pub account_types: Vec<String>,
    /// Exactly this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Repository glob, e.g. 'ci/**' (repeat, or separate with commas).
    #[arg(long = "repository", value_delimiter = ',', value_name = "GLOB")]
    pub repositories: Vec<String>,
    /// Tag glob, e.g. 'v*' (repeat, or separate with commas); only with
    /// registry:tag_overwrite and registry:tag_delete, whose deny makes
    /// the matching tags immutable.
    #[arg(
        long = "tags",
        alias = "tag",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub tags: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// true or false.
    #[arg(long)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The latest events, oldest first.
    Tail {
        /// How many.
        #[arg(long = "n", default_value_t = 20)]
        n: usize,
        /// e.g. manifest_pushed, policy_deny, login_failed.
        #[arg(long)]
        event_type: Option<String>,
        /// Subject id of the actor.
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        repository: Option<String>,
        /// An RFC 3339 time, or how long ago (e.g. 1h, 30m).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GcArgs {
    #[command(subcommand)]
    pub command: Option<GcCommand>,
    /// Delete blob files that have no row and report rows without a file,
    /// instead of collecting.
    #[arg(long)]
    pub reconcile: bool,
    /// Wait for the run to finish and print its report.
    #[arg(long, conflicts_with = "reconcile")]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum GcCommand {
    /// Whether GC runs, and how the last run went.
    Status,
    /// The last completed runs, newest first.
    Runs {
        /// How many.
        #[arg(long = "n", default_value_t = 10)]
        n: usize,
    },
}

/// Writes the completion script for `shell` to standard output.
///
/// The script is generated into memory first because
/// `clap_complete::generate` panics on a failed write; a reader that
/// stops early (`| head`) is not an error, any other write failure is.
fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mcrctl", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcrctl: cannot write the completion script: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs mcrctl on the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        return print_completions(shell);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcrctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mcrctl: {failure}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let roots = roots(cli.ca_cert.as_deref())?;
    let token = cli.token.clone().filter(|t| !t.trim().is_empty());
    match &cli.grpc {
        Some(addr) => {
            let tls = (cli.ca_cert.is_some() || addr.starts_with("https://"))
                .then(|| mcr_grpc::client::tls_config(roots))
                .transpose()
                .map_err(|e| Failure::usage(format!("TLS 1.3 is not available: {e}")))?;
            let mut api = grpc::Grpc::connect(addr, token.as_deref(), tls).await?;
            commands::run(&mut api, &cli, &format!("{addr} (gRPC)")).await
        }
        None => {
            let mut api = rest::Rest::new(&cli.server, token, rest_tls(roots)?)?;
            commands::run(&mut api, &cli, &format!("{} (REST)", cli.server)).await
        }
    }
}

/// The public roots, plus the CA of `--ca-cert`.
fn roots(ca_cert: Option<&Path>) -> Result<RootCertStore, Failure> {
    crate::tls::trusted_roots(ca_cert, "--ca-cert").map_err(Failure::usage)
}

/// TLS 1.3 only, ring, as every MCR connection.
fn rest_tls(roots: RootCertStore) -> Result<ClientConfig, Failure> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Failure::usage(format!("TLS 1.3 is not available: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_name_every_command_and_bash_accepts_its_script() {
        use clap_complete::Shell;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mcrctl", &mut script);
            let script = String::from_utf8(script).expect("UTF-8");
            for word in [
                "repo",
                "policy",
                "audit",
                "gc",
                "snapshot",
                "completions",
                "server",
            ] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
            if shell == Shell::Bash {
                let dir = tempfile::tempdir().unwrap();
                let file = dir.path().join("mcrctl.bash");
                std::fs::write(&file, &script).unwrap();
                let out = std::process::Command::new("bash")
                    .arg("-n")
                    .arg(&file)
                    .output()
                    .expect("bash runs");
                assert!(
                    out.status.success(),
                    "bash -n: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    #[test]
    fn body_and_flags_do_not_mix() {
        let err = Cli::try_parse_from([
            "mcrctl",
            "policy",
            "create",
            "--priority",
            "1",
            "--body",
            "{}",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let ok = Cli::try_parse_from([
            "mcrctl",
            "policy",
            "create",
            "--action",
            "registry:pull,registry:push",
            "--json",
        ])
        .unwrap();
        assert!(ok.json);
        match ok.command {
            Command::Policy(PolicyCommand::Create { flags, .. }) => {
                assert_eq!(flags.actions, ["registry:pull", "registry:push"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
