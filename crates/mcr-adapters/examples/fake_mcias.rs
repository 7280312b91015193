//! A fake MCIAS over TLS for end-to-end checks of a real `mcrsrv`:
//! `cargo run -p mcr-adapters --features fake-mcias --example fake_mcias -- DIR`.
//!
//! Writes `DIR/mcias-ca.pem` and `DIR/mcias.url`, then serves until killed.
//! Accounts (password = username + "-pw"): `alice` (human, role user),
//! `root` (human, role admin), `ci` (system, no roles), `visitor` (human,
//! role guest).

use std::path::PathBuf;

use mcr_adapters::mcias::fake::{FakeAccount, FakeMcias, FakeMciasOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: fake_mcias DIR"));
    let fake = FakeMcias::start(FakeMciasOptions {
        tls: true,
        ..FakeMciasOptions::default()
    })
    .await;
    fake.add_account(FakeAccount::new("alice", "alice-pw").with_roles(&["user"]));
    fake.add_account(FakeAccount::new("root", "root-pw").with_roles(&["admin"]));
    fake.add_account(FakeAccount::new("ci", "ci-pw").system());
    fake.add_account(FakeAccount::new("visitor", "visitor-pw").with_roles(&["guest"]));
    let ca = fake.ca_cert_pem().expect("a TLS fake has a CA");
    std::fs::write(dir.join("mcias-ca.pem"), ca).expect("write the CA");
    std::fs::write(dir.join("mcias.url"), fake.url()).expect("write the URL");
    std::future::pending::<()>().await;
}
