//! A [`Registry`] wired to the fakes, and callers to drive it with.

use std::sync::Arc;

use crate::policy::{Engine, PolicyEngine};
use crate::principal::{AccountType, Principal, Role};
use crate::proxy::ProxyConfig;
use crate::registry::{Caller, Registry, RegistryConfig};

use super::{FakeBlobStore, FakeIdentity, FakeMetaStore, ManualClock};

/// The password every user [`TestRegistry`] registers logs in with.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// A [`Registry`] over in-memory fakes, with every fake exposed so a test
/// can arrange state and assert side effects.
///
/// The identity fake knows the users `admin`, `user`, `guest` and `system`
/// (the principals of [`admin`], [`user`], [`guest`] and [`system`]), all
/// with the password [`TEST_PASSWORD`]. The policy engine holds only the
/// built-in rules until a test stores one.
pub struct TestRegistry {
    /// The engine under test.
    pub registry: Arc<Registry>,
    /// Its metadata store.
    pub meta: Arc<FakeMetaStore>,
    /// Its blob store.
    pub blobs: Arc<FakeBlobStore>,
    /// Its identity service, reading time from `clock`.
    pub identity: Arc<FakeIdentity>,
    /// Its policy engine (built-in rules until a test stores one).
    pub policy: Arc<Engine>,
    /// The clock the registry and the identity fake read.
    pub clock: Arc<ManualClock>,
}

impl TestRegistry {
    /// A registry with the default configuration.
    pub fn new() -> TestRegistry {
        TestRegistry::with_config(RegistryConfig::default())
    }

    /// A registry with `config` (a short GC grace period, say).
    pub fn with_config(config: RegistryConfig) -> TestRegistry {
        TestRegistry::with_proxies(config, Vec::new())
    }

    /// A registry with `config` mirroring `proxies` (pull-through cache).
    ///
    /// # Panics
    /// If the proxies' prefixes overlap.
    pub fn with_proxies(config: RegistryConfig, proxies: Vec<ProxyConfig>) -> TestRegistry {
        let clock = Arc::new(ManualClock::default());
        let meta = Arc::new(FakeMetaStore::new());
        let blobs = Arc::new(FakeBlobStore::new());
        let identity = Arc::new(FakeIdentity::new(clock.clone()));
        let policy = Arc::new(Engine::new());
        // The store is empty, so loading it would give no rules: set them
        // directly and stay synchronous.
        policy.set_rules(Vec::new());
        for caller in [admin(), user(), guest(), system()] {
            let name = caller.principal.subject.clone();
            identity.add_user(&name, TEST_PASSWORD, caller.principal);
        }
        let registry = Registry::new(
            meta.clone(),
            blobs.clone(),
            identity.clone(),
            policy.clone(),
        )
        .with_snapshots(meta.clone())
        .with_clock(clock.clone())
        .with_config(config)
        .with_proxies(proxies)
        .expect("the test's proxies do not overlap");
        TestRegistry {
            registry: Arc::new(registry),
            meta,
            blobs,
            identity,
            policy,
            clock,
        }
    }
}

impl Default for TestRegistry {
    fn default() -> Self {
        TestRegistry::new()
    }
}

fn caller(name: &str, account_type: AccountType, roles: Vec<Role>) -> Caller {
    let mut principal = Principal::new(name, account_type, roles);
    principal.username = Some(name.to_string());
    Caller::new(principal)
}

/// A human with the admin role: every action, by the built-in rules.
pub fn admin() -> Caller {
    caller("admin", AccountType::Human, vec![Role::Admin])
}

/// A human with the user role: pull, push, delete and catalog everywhere.
pub fn user() -> Caller {
    caller("user", AccountType::Human, vec![Role::User])
}

/// A human with the guest role: only the version check, unless a stored
/// rule grants more.
pub fn guest() -> Caller {
    caller("guest", AccountType::Human, vec![Role::Guest])
}

/// A system account with no roles: only the version check, unless a stored
/// rule grants more.
pub fn system() -> Caller {
    caller("system", AccountType::System, Vec::new())
}
