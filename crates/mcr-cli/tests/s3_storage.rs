//! `mcrsrv` on `[storage] backend = "s3"`: it refuses to start when the
//! bucket cannot be used, saying which; on a real Garage (started by
//! `scripts/garage.sh`) a chunked push and a pull go through the router.

#[path = "../../mcr-adapters/tests/support/garage.rs"]
mod garage;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mcr_cli::server::{dev, run};
use sha2::Digest as _;
use tower::ServiceExt;

use garage::Garage;

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcrsrv_refuses_to_start_on_a_bucket_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (config, _, _) = dev::dev_config(
        dir.path(),
        "127.0.0.1:0",
        &[],
        env(&[
            ("MCR_STORAGE_BACKEND", "s3".into()),
            ("MCR_STORAGE_S3_ENDPOINT", endpoint.clone()),
            ("MCR_STORAGE_S3_BUCKET", "mcr".into()),
            ("MCR_STORAGE_S3_REGION", "garage".into()),
            ("MCR_STORAGE_S3_ACCESS_KEY_ID", "GK0".into()),
            ("MCR_STORAGE_S3_SECRET_ACCESS_KEY", "s3cret".into()),
        ]),
    )
    .unwrap();
    let err = match run::build(&config, tokio_util::task::TaskTracker::new()).await {
        Ok(_) => panic!("mcrsrv started on an endpoint nothing listens on"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!("cannot use S3 bucket \"mcr\" at {endpoint}")),
        "the error names the bucket and the endpoint: {err}"
    );
    assert!(!err.contains("s3cret"), "the error shows the secret: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_push_and_a_pull_go_through_garage() {
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        "MCR_STORAGE_BACKEND",
        "MCR_STORAGE_S3_ENDPOINT",
        "MCR_STORAGE_S3_BUCKET",
        "MCR_STORAGE_S3_REGION",
    ];
    let mut overrides: Vec<(String, String)> = vars
        .iter()
        .map(|v| (v.to_string(), garage.var(v)))
        .collect();
    // The credentials through the config, as an operator would set them.
    overrides.push((
        "MCR_STORAGE_S3_ACCESS_KEY_ID".into(),
        garage.var("AWS_ACCESS_KEY_ID"),
    ));
    overrides.push((
        "MCR_STORAGE_S3_SECRET_ACCESS_KEY".into(),
        garage.var("AWS_SECRET_ACCESS_KEY"),
    ));
    let (config, password, _) = dev::dev_config(dir.path(), "127.0.0.1:0", &[], overrides).unwrap();
    let state = run::build(&config, tokio_util::task::TaskTracker::new())
        .await
        .unwrap();
    let (issued, _) = state
        .registry
        .login("admin", &password, None)
        .await
        .unwrap();
    let auth = format!("Bearer {}", issued.token.expose());
    let router = mcr_http::router(state);
    let call = |method: &str, uri: &str, body: Vec<u8>| {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", &auth)
            .header("content-length", body.len())
            .header("content-type", "application/octet-stream")
            .body(Body::from(body))
            .unwrap();
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let location = resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string());
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, location, body)
        }
    };

    // 9 MiB in three PATCHes: past one 8 MiB part, so the S3 multipart
    // upload and the tail both take part.
    let data: Vec<u8> = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)));
    let (status, location, _) = call("POST", "/v2/s3/test/blobs/uploads/", Vec::new()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut location = location.expect("a Location");
    for piece in data.chunks(3 << 20) {
        let (status, next, body) = call("PATCH", &location, piece.to_vec()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body:?}");
        location = next.expect("a Location");
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let (status, _, body) = call(
        "PUT",
        &format!("{location}{sep}digest={digest}"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");

    let (status, _, body) = call("GET", &format!("/v2/s3/test/blobs/{digest}"), Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == data, "the blob reads back as pushed");
}
