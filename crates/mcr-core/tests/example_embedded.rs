//! Runs `examples/embedded.rs`, so the embedding example stays true.

#[path = "../examples/embedded.rs"]
mod embedded;

#[test]
fn the_embedding_example_pushes_pulls_and_collects() {
    embedded::main().expect("the example runs to the end");
}
