//! The daemon's config file and its `MCR_*` overrides. The input is the
//! TOML text, then NUL-separated `NAME=value` environment variables.
//!
//! Parsing and every accessor `mcrsrv` calls answer or name the problem,
//! never panic, and an override wins over the file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcr_cli::server::config::Config;

fuzz_target!(|s: &str| {
    let mut parts = s.split('\0');
    let text = parts.next().unwrap_or_default();
    let env: Vec<(String, String)> = parts
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(config) = Config::parse(text, env.clone()) else {
        return;
    };
    let _ = config.validate_for_server();
    let _ = config.listen_addr();
    let _ = config.grpc_addr();
    let _ = config.gc_grace_period();
    let _ = config.upload_max_age();
    let _ = config.token_ttl();
    let _ = config.shutdown_timeout();
    let _ = config.uploads_path();
    let _ = config.service_name();

    // The one variable that sets `gc.grace_period` (when only one does).
    let setters: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("MCR_") && k[4..].eq_ignore_ascii_case("gc_grace_period"))
        .collect();
    if let [(name, value)] = setters.as_slice() {
        if env.iter().filter(|(k, _)| k == name).count() == 1 {
            assert_eq!(config.gc.grace_period.as_deref(), Some(value.as_str()));
        }
    }
});
