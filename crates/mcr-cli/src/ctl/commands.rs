//! The commands: call the API, print a table or JSON.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::Duration;

use mcr_core::audit::AuditEvent;
use mcr_core::digest::Digest;
use mcr_core::display::parse_size;
use mcr_core::names::RepoName;
use mcr_core::policy::{Rule, RuleDraft, RulePatch};
use mcr_core::quota::QuotaDraft;
use mcr_core::time::{Clock, SystemClock, Timestamp};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::api::{Api, Failure};
use super::model::{
    AuditFilter, Dashboard, ExplainQuery, GcStatus, ManifestDetail, RepoListing, RepoSummary,
};
use super::table::{list_or_any, size, Table};
use super::{
    AuditCommand, Cli, Command, EventsCommand, GcCommand, PolicyCommand, ProxyCommand,
    QuotaCommand, RepoCommand, RuleFlags,
};
use mcr_core::ports::SortOrder;

/// How often `gc --wait` asks whether the run is done.
const GC_POLL: Duration = Duration::from_millis(500);

pub(crate) async fn run<A: Api>(api: &mut A, cli: &Cli, target: &str) -> Result<(), Failure> {
    let out = Out { json: cli.json };
    match &cli.command {
        Command::Status => {
            let status = api.health().await?;
            // Not ready is a failure: scripts and probes go by the code.
            api.ready().await?;
            out.print(
                &json!({"server": target, "status": status, "ready": true}),
                || format!("{target}: {status}, ready\n"),
            )
        }
        Command::Login {
            username,
            password_stdin,
        } => login(api, out, username, *password_stdin).await,
        Command::Dashboard => {
            let d = api.dashboard().await?;
            out.print(&d, || dashboard_text(&d))
        }
        Command::Repo(cmd) => repo(api, out, cmd).await,
        Command::Policy(cmd) => policy(api, out, cmd).await,
        Command::Retention(cmd) => super::retention::retention(api, out, cmd).await,
        Command::Audit(AuditCommand::Tail {
            n,
            event_type,
            actor,
            repository,
            since,
        }) => {
            let filter = AuditFilter {
                event_type: event_type.clone(),
                actor_id: actor.clone(),
                repository: repository.clone(),
                since: since.as_deref().map(parse_since).transpose()?,
                n: *n,
            };
            let mut events = api.audit(&filter).await?;
            // Like tail: the newest last.
            events.reverse();
            out.print(&events, || audit_table(&events))
        }
        Command::Gc(args) => match (&args.command, args.reconcile) {
            (Some(GcCommand::Status), _) => {
                let s = api.gc_status().await?;
                out.print(&s, || gc_status_text(&s))
            }
            (Some(GcCommand::Runs { n }), _) => {
                let runs = api.gc_runs(*n).await?;
                out.print(&runs, || {
                    let mut t = Table::new(&["ID", "STARTED", "COMPLETED", "BLOBS", "FREED"]);
                    for r in &runs {
                        t.row(vec![
                            r.id.clone(),
                            r.started_at.to_string(),
                            r.completed_at.to_string(),
                            r.blobs_removed.to_string(),
                            size(r.bytes_freed),
                        ]);
                    }
                    t.render()
                })
            }
            (None, true) => {
                let r = api.reconcile().await?;
                out.print(&r, || {
                    let mut s = format!(
                        "reconcile: removed {} file(s) that had no row; {} row(s) have no file\n",
                        r.files_removed.len(),
                        r.missing_files.len()
                    );
                    for d in &r.files_removed {
                        s.push_str(&format!("  removed  {d}\n"));
                    }
                    for d in &r.missing_files {
                        s.push_str(&format!("  missing  {d}\n"));
                    }
                    if !r.missing_files.is_empty() {
                        s.push_str(
                            "rows without a file mean lost blobs: restore them from a backup \
                             or delete the images that use them\n",
                        );
                    }
                    s
                })
            }
            (None, false) => {
                let id = api.start_gc().await?;
                if !args.wait {
                    return out.print(&json!({ "id": id }), || {
                        format!(
                            "garbage collection {id} started; `mcrctl gc status` shows how it went\n"
                        )
                    });
                }
                let report = loop {
                    let s = api.gc_status().await?;
                    match s.last_run {
                        Some(r) if !s.running && r.id == id => break r,
                        _ => tokio::time::sleep(GC_POLL).await,
                    }
                };
                out.print(&report, || {
                    format!(
                        "garbage collection {} done: {} blob(s) removed, {} freed\n",
                        report.id,
                        report.blobs_removed,
                        size(report.bytes_freed)
                    )
                })
            }
        },
        Command::Snapshot => {
            let s = api.snapshot().await?;
            out.print(&s, || format!("{}\n", s.location))
        }
        Command::Proxy(ProxyCommand::List) => {
            let proxies = api.proxies().await?;
            out.print(&proxies, || {
                let mut t = Table::new(&[
                    "PREFIX",
                    "UPSTREAM",
                    "HITS",
                    "MISSES",
                    "REPOSITORIES",
                    "CACHED",
                ]);
                for p in &proxies {
                    t.row(vec![
                        p.prefix.clone(),
                        p.upstream.clone(),
                        p.hits.to_string(),
                        p.misses.to_string(),
                        p.repositories.to_string(),
                        size(p.cache_size),
                    ]);
                }
                t.render()
            })
        }
        Command::Proxy(ProxyCommand::Drop { name }) => {
            let repo = RepoName::new(name)?;
            api.drop_proxy_cache(&repo).await?;
            out.print(&json!({"dropped": repo}), || {
                format!("dropped the cache of {repo}; `mcrctl gc` frees its layers\n")
            })
        }
        Command::Quota(cmd) => quota(api, out, cmd).await,
        Command::Events(cmd) => events(api, out, cmd).await,
        // Answered before any connection is made.
        Command::Completions { .. } => Ok(()),
    }
}

async fn events<A: Api>(api: &mut A, out: Out, cmd: &EventsCommand) -> Result<(), Failure> {
    let when = |t: Option<Timestamp>| t.map_or_else(|| "-".to_string(), Timestamp::to_rfc3339);
    match cmd {
        EventsCommand::Status => {
            let hooks = api.webhooks().await?;
            out.print(&hooks, || {
                let mut t = Table::new(&[
                    "URL",
                    "DELIVERED",
                    "PENDING",
                    "ATTEMPTS",
                    "LAST ATTEMPT",
                    "NEXT ATTEMPT",
                    "LAST ERROR",
                ]);
                for h in &hooks {
                    t.row(vec![
                        h.url.clone(),
                        h.delivered.to_string(),
                        h.pending.to_string(),
                        h.attempts.to_string(),
                        when(h.last_attempt),
                        when(h.next_attempt),
                        h.last_error.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                t.render()
            })
        }
        EventsCommand::List { after, limit } => {
            let events = api.events(*after, *limit).await?;
            out.print(&events, || {
                let mut t = Table::new(&["ID", "EVENT ID", "TIME", "TYPE", "REPOSITORY", "DATA"]);
                for e in &events {
                    t.row(vec![
                        e.id.to_string(),
                        e.event_id.to_string(),
                        e.time.to_rfc3339(),
                        e.kind.to_string(),
                        e.repository
                            .as_ref()
                            .map_or_else(|| "-".into(), |r| r.to_string()),
                        e.data.to_string(),
                    ]);
                }
                t.render()
            })
        }
    }
}

async fn quota<A: Api>(api: &mut A, out: Out, cmd: &QuotaCommand) -> Result<(), Failure> {
    match cmd {
        QuotaCommand::List => {
            let quotas = api.quotas().await?;
            out.print(&quotas, || {
                let mut t = Table::new(&["ID", "SCOPE", "LIMIT", "USED", "USE"]);
                for q in &quotas {
                    let limit = q.quota.limit_bytes.bytes();
                    t.row(vec![
                        q.quota.id.to_string(),
                        q.quota.scope.to_string(),
                        size(limit),
                        size(q.used_bytes),
                        format!("{:.0}%", q.used_bytes as f64 * 100.0 / limit as f64),
                    ]);
                }
                t.render()
            })
        }
        QuotaCommand::Set { scope, limit } => {
            let draft = QuotaDraft {
                scope: scope.clone(),
                limit_bytes: parse_size(limit)?,
            };
            let q = api.set_quota(&draft).await?;
            out.print(&q, || {
                format!(
                    "quota {} on {}: {}\n",
                    q.id,
                    q.scope,
                    size(q.limit_bytes.bytes())
                )
            })
        }
        QuotaCommand::Delete { id } => {
            api.delete_quota(*id).await?;
            out.print(&json!({ "deleted": id }), || {
                format!("deleted quota {id}\n")
            })
        }
    }
}

/// Where output goes: a table for people, or JSON.
#[derive(Clone, Copy)]
pub(super) struct Out {
    json: bool,
}

impl Out {
    pub(super) fn print<T: Serialize>(
        self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        let text = if self.json {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))?;
            s.push('\n');
            s
        } else {
            human()
        };
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`mcrctl ... | head`) is not an error worth a word.
        let _ = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush());
        Ok(())
    }
}

async fn login<A: Api>(
    api: &mut A,
    out: Out,
    username: &str,
    from_stdin: bool,
) -> Result<(), Failure> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Failure::usage(format!("cannot read the password from standard input: {e}"))
        })?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("password for {username}: "))
            .map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?
    } else {
        return Err(Failure::usage(
            "no terminal to ask for the password on; pipe it in with --password-stdin",
        ));
    };
    if password.is_empty() {
        return Err(Failure::usage("the password is empty"));
    }
    let login = api.login(username, &password).await?;
    if !out.json {
        eprintln!(
            "logged in as {username}; the token is valid until {}. Pass it with --token or \
             `export MCR_TOKEN=<token>`.",
            login.expires_at
        );
    }
    out.print(&login, || format!("{}\n", login.token))
}

async fn repo<A: Api>(api: &mut A, out: Out, cmd: &RepoCommand) -> Result<(), Failure> {
    match cmd {
        RepoCommand::List { filter, sort, desc } => {
            let mut listing = RepoListing {
                filter: filter.clone(),
                sort: sort.parse()?,
                order: if *desc {
                    SortOrder::Desc
                } else {
                    SortOrder::Asc
                },
                ..RepoListing::default()
            };
            let mut all: Vec<RepoSummary> = Vec::new();
            loop {
                let page = api.repositories(&listing).await?;
                all.extend(page.repositories);
                match page.next {
                    // A server that repeats itself must not loop us forever.
                    Some(next) if Some(&next) != listing.last.as_ref() => listing.last = Some(next),
                    _ => break,
                }
            }
            out.print(&all, || {
                let mut t =
                    Table::new(&["NAME", "TAGS", "MANIFESTS", "SIZE", "LAST PUSH", "CREATED"]);
                for r in &all {
                    t.row(vec![
                        r.name.to_string(),
                        r.tag_count.to_string(),
                        r.manifest_count.to_string(),
                        size(r.total_size),
                        r.last_push
                            .map_or_else(|| "never".into(), |t| t.to_string()),
                        r.created.to_string(),
                    ]);
                }
                t.render()
            })
        }
        RepoCommand::Manifest { name, reference } => {
            let m = api.manifest(&RepoName::new(name)?, reference).await?;
            out.print(&m, || manifest_text(&m))
        }
        RepoCommand::Show { name } => {
            let d = api.repository(&RepoName::new(name)?).await?;
            out.print(&d, || {
                let s = &d.summary;
                let mut text = format!(
                    "name:       {}\ntags:       {}\nmanifests:  {}\nsize:       {} ({} bytes)\ncreated:    {}\n",
                    s.name,
                    s.tag_count,
                    s.manifest_count,
                    size(s.total_size),
                    s.total_size,
                    s.created
                );
                let mut tags = Table::new(&["TAG", "DIGEST"]);
                for t in &d.tags {
                    tags.row(vec![t.name.to_string(), t.digest.to_string()]);
                }
                let mut manifests = Table::new(&["MANIFEST", "MEDIA TYPE", "SIZE", "CREATED"]);
                for m in &d.manifests {
                    manifests.row(vec![
                        m.digest.to_string(),
                        m.media_type.to_string(),
                        size(m.size),
                        m.created.to_string(),
                    ]);
                }
                let mut layers = Table::new(&["LAYER", "SIZE"]);
                for l in &d.layers {
                    layers.row(vec![l.digest.to_string(), size(l.size)]);
                }
                for table in [tags, manifests, layers] {
                    text.push('\n');
                    text.push_str(&table.render());
                }
                text
            })
        }
        RepoCommand::Delete { name, yes } => {
            let repo = RepoName::new(name)?;
            if !yes {
                confirm(&format!(
                    "delete repository {repo} with all its tags and manifests?"
                ))?;
            }
            api.delete_repository(&repo).await?;
            out.print(&json!({"deleted": repo}), || {
                format!("deleted repository {repo}; `mcrctl gc` frees its layers\n")
            })
        }
    }
}

/// Asks on the terminal; without one, refuses and says how to go on.
fn confirm(question: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "refusing to {}: there is no terminal to confirm on; pass --yes to go ahead",
            question.trim_end_matches('?')
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::usage(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure::usage("not confirmed; nothing was deleted"))
    }
}

async fn policy<A: Api>(api: &mut A, out: Out, cmd: &PolicyCommand) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::List => {
            let rules = api.rules().await?;
            out.print(&rules, || rules_table(&rules))
        }
        PolicyCommand::Show { id } => {
            let rule = api.rule(*id).await?;
            out.print(&rule, || rules_table(std::slice::from_ref(&rule)))
        }
        PolicyCommand::Create { flags, body } => {
            let draft: RuleDraft = match body {
                Some(body) => parse_body(body, "rule")?,
                None => serde_json::from_value(flags_json(flags)).map_err(|e| {
                    Failure::usage(format!(
                        "invalid rule: {e}; give --priority, --effect and at least one \
                         --action (or --body JSON)"
                    ))
                })?,
            };
            let rule = api.create_rule(&draft).await?;
            out.print(&rule, || {
                format!(
                    "created rule {}\n{}",
                    rule.id,
                    rules_table(std::slice::from_ref(&rule))
                )
            })
        }
        PolicyCommand::Update {
            id,
            flags,
            clear_subject,
            body,
        } => {
            let patch: RulePatch = match body {
                Some(body) => parse_body(body, "patch")?,
                None => {
                    let mut patch: RulePatch = serde_json::from_value(flags_json(flags))
                        .map_err(|e| Failure::usage(format!("invalid change: {e}")))?;
                    if *clear_subject {
                        patch.subject = Some(None);
                    }
                    patch
                }
            };
            if patch == RulePatch::default() {
                return Err(Failure::usage(
                    "nothing to change; give at least one of --priority, --effect, --action, \
                     --role, --account-type, --subject, --clear-subject, --repository, \
                     --tags, --description, --enabled, or --body JSON",
                ));
            }
            let rule = api.update_rule(*id, &patch).await?;
            out.print(&rule, || {
                format!(
                    "updated rule {}\n{}",
                    rule.id,
                    rules_table(std::slice::from_ref(&rule))
                )
            })
        }
        PolicyCommand::Delete { id } => {
            api.delete_rule(*id).await?;
            out.print(&json!({ "deleted": id }), || format!("deleted rule {id}\n"))
        }
        PolicyCommand::Explain {
            subject,
            account_type,
            roles,
            action,
            repository,
            tag,
        } => {
            let e = api
                .explain(&ExplainQuery {
                    subject: subject.clone(),
                    account_type: account_type.clone(),
                    roles: roles.clone(),
                    action: action.clone(),
                    repository: repository.clone(),
                    tag: tag.clone(),
                })
                .await?;
            out.print(&e, || {
                let mut text = e.text.clone();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text
            })
        }
    }
}

/// The given flags as the JSON the REST API takes, for the engine's own
/// deserializer to check.
fn flags_json(f: &RuleFlags) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(p) = f.priority {
        put("priority", json!(p));
    }
    if let Some(e) = &f.effect {
        put("effect", json!(e));
    }
    for (k, v) in [
        ("actions", &f.actions),
        ("roles", &f.roles),
        ("account_types", &f.account_types),
        ("repositories", &f.repositories),
        ("tags", &f.tags),
    ] {
        if !v.is_empty() {
            put(k, json!(v));
        }
    }
    if let Some(s) = &f.subject {
        put("subject", json!(s));
    }
    if let Some(d) = &f.description {
        put("description", json!(d));
    }
    if let Some(e) = f.enabled {
        put("enabled", json!(e));
    }
    Value::Object(m)
}

/// `--body`: JSON, `-` for standard input or `@FILE`.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &str,
    what: &str,
) -> Result<T, Failure> {
    let text = if body == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::usage(format!("cannot read --body from standard input: {e}")))?;
        s
    } else if let Some(path) = body.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read --body file {path}: {e}")))?
    } else {
        body.to_string()
    };
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("invalid {what} JSON: {e}")))
}

fn rules_table(rules: &[Rule]) -> String {
    let mut t = Table::new(&[
        "ID",
        "PRIORITY",
        "EFFECT",
        "ACTIONS",
        "ROLES",
        "ACCOUNTS",
        "SUBJECT",
        "REPOSITORIES",
        "TAGS",
        "ENABLED",
        "DESCRIPTION",
    ]);
    for r in rules {
        t.row(vec![
            if r.is_builtin() {
                format!("{} (built-in)", r.id)
            } else {
                r.id.to_string()
            },
            r.priority.to_string(),
            r.effect.to_string(),
            list_or_any(&r.actions),
            list_or_any(&r.roles),
            list_or_any(&r.account_types),
            r.subject.clone().unwrap_or_else(|| "*".into()),
            list_or_any(&r.repositories),
            list_or_any(&r.tags),
            if r.enabled { "yes" } else { "no" }.into(),
            r.description.clone(),
        ]);
    }
    t.render()
}

fn audit_table(events: &[AuditEvent]) -> String {
    let mut t = Table::new(&[
        "ID",
        "TIME",
        "EVENT",
        "ACTOR",
        "IP",
        "REPOSITORY",
        "DIGEST",
        "DETAILS",
    ]);
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    for e in events {
        let ev = &e.event;
        t.row(vec![
            e.id.to_string(),
            ev.time.to_string(),
            ev.event_type.to_string(),
            or_dash(ev.actor_id.clone()),
            or_dash(ev.ip.clone()),
            or_dash(ev.repository.as_ref().map(ToString::to_string)),
            or_dash(ev.digest.as_ref().map(Digest::short)),
            ev.details
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    t.render()
}

fn gc_status_text(s: &GcStatus) -> String {
    let mut text = format!(
        "running:         {}\n",
        if s.running { "yes" } else { "no" }
    );
    match &s.last_run {
        None => text.push_str("last run:        never\n"),
        Some(r) => text.push_str(&format!(
            "last run:        {}\n  started:       {}\n  completed:     {}\n  blobs removed: {}\n  bytes freed:   {} ({} bytes)\n",
            r.id,
            r.started_at,
            r.completed_at,
            r.blobs_removed,
            size(r.bytes_freed),
            r.bytes_freed
        )),
    }
    match s.next_run {
        None => text.push_str("next run:        not scheduled ([gc] interval is off)\n"),
        Some(t) => text.push_str(&format!("next run:        {t} (scheduled)\n")),
    }
    text
}

fn dashboard_text(d: &Dashboard) -> String {
    let mut text = format!(
        "repositories:  {}\nstored:        {} ({} bytes)\n",
        d.repositories,
        size(d.stored_bytes),
        d.stored_bytes
    );
    if let Some(gc) = &d.gc {
        text.push('\n');
        text.push_str(&gc_status_text(gc));
    }
    let mut t = Table::new(&["PUSHED", "REPOSITORY", "TAGS", "DIGEST", "BY"]);
    for p in &d.recent_pushes {
        t.row(vec![
            p.time.to_string(),
            p.repository.to_string(),
            if p.tags.is_empty() {
                "-".into()
            } else {
                p.tags.join(",")
            },
            p.digest.short(),
            p.actor.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    text.push('\n');
    text.push_str(&t.render());
    text
}

fn manifest_text(m: &ManifestDetail) -> String {
    let mut text = format!(
        "repository:  {}\ndigest:      {}\nmedia type:  {}\nsize:        {}\ncreated:     {}\n",
        m.repository,
        m.digest,
        m.media_type,
        size(m.size),
        m.created
    );
    if let Some(a) = &m.artifact_type {
        text.push_str(&format!("artifact:    {a}\n"));
    }
    if let Some(s) = &m.subject {
        text.push_str(&format!("subject:     {s}\n"));
    }
    for (k, v) in &m.annotations {
        text.push_str(&format!("annotation:  {k}={v}\n"));
    }
    if let Some(c) = &m.config {
        text.push_str(&format!("config:      {} ({})\n", c.digest, size(c.size)));
    }
    let mut tables = Vec::new();
    if !m.layers.is_empty() {
        let mut t = Table::new(&["LAYER", "MEDIA TYPE", "SIZE"]);
        for l in &m.layers {
            t.row(vec![
                l.digest.to_string(),
                l.media_type.to_string(),
                size(l.size),
            ]);
        }
        tables.push(t);
    }
    if !m.manifests.is_empty() {
        let mut t = Table::new(&["MANIFEST", "PLATFORM", "SIZE"]);
        for c in &m.manifests {
            t.row(vec![
                c.digest.to_string(),
                c.platform().map_or_else(|| "-".into(), |p| p.to_string()),
                size(c.size),
            ]);
        }
        tables.push(t);
    }
    if !m.referrers.is_empty() {
        let mut t = Table::new(&["REFERRER", "ARTIFACT TYPE", "SIZE"]);
        for r in &m.referrers {
            t.row(vec![
                r.digest.to_string(),
                r.artifact_type
                    .as_ref()
                    .map_or_else(|| "-".into(), ToString::to_string),
                size(r.size),
            ]);
        }
        tables.push(t);
    }
    for t in tables {
        text.push('\n');
        text.push_str(&t.render());
    }
    text
}

/// `--since`: an RFC 3339 time, or a duration ago (`1h`, `30m`).
fn parse_since(s: &str) -> Result<Timestamp, Failure> {
    if let Ok(ago) = humantime::parse_duration(s) {
        return Ok(SystemClock.now().saturating_sub(ago));
    }
    Timestamp::parse_rfc3339(s).map_err(|_| {
        Failure::usage(format!(
            "--since {s:?} is neither a time like 2024-05-01T12:00:00Z nor a duration like 1h"
        ))
    })
}
