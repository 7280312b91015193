//! A fake MCIAS over TLS for end-to-end checks of a real `mcrsrv`:
//! `cargo run -p mcr-adapters --features fake-mcias --example fake_mcias -- DIR`.
//!
//! Writes `DIR/mcias-ca.pem` and `DIR/mcias.url`, then serves until killed.
//! Accounts (password = username + "-pw"): `alice` (human, role user),
//! `root` (human, role admin), `ci` (system, no roles), `visitor` (human,
//! role guest), and one human account per further argument `NAME:ROLE`
//! (deploy/tests/runbook.sh adds `ops:admin`).

use std::path::PathBuf;

use mcr_adapters::mcias::fake::{FakeAccount, FakeMcias, FakeMciasOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: fake_mcias DIR [NAME:ROLE]..."));
    let fake = FakeMcias::start(FakeMciasOptions {
        tls: true,
        ..FakeMciasOptions::default()
    })
    .await;
    fake.add_account(FakeAccount::new("alice", "alice-pw").with_roles(&["user"]));
    fake.add_account(FakeAccount::new("root", "root-pw").with_roles(&["admin"]));
    fake.add_account(FakeAccount::new("ci", "ci-pw").system());
    fake.add_account(FakeAccount::new("visitor", "visitor-pw").with_roles(&["guest"]));
    for extra in args {
        let (name, role) = extra
            .split_once(':')
            .expect("an extra account is NAME:ROLE");
        fake.add_account(FakeAccount::new(name, &format!("{name}-pw")).with_roles(&[role]));
    }
    let ca = fake.ca_cert_pem().expect("a TLS fake has a CA");
    std::fs::write(dir.join("mcias-ca.pem"), ca).expect("write the CA");
    std::fs::write(dir.join("mcias.url"), fake.url()).expect("write the URL");
    std::future::pending::<()>().await;
}
