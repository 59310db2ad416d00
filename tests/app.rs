//! The whole service (`app::App`) started in process as `serve --dev` starts it, reviewed
//! over real TLS, and stopped through its handle rather than a signal.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use storage_admission::app::App;
use storage_admission::dev;
use storage_admission::policy::Policy;
use storage_admission::server::serve::ConnLimits;
use storage_admission::server::{Limits, ServeConfig, TlsSource};

#[tokio::test]
async fn a_dev_app_answers_the_sample_review_and_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let files = dev::write(dir.path()).unwrap();
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsSource::Files {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        index: Arc::new(dev::demo_cluster().unwrap()),
        policy: Policy::builtin(),
        policy_file: None,
        reload_interval: Duration::from_secs(5),
        conn_limits: ConnLimits::default(),
        limits: Limits::default(),
        fetcher: None,
    };
    let app = App::start(config, None).await.unwrap();
    let addr = app.https_addr();

    // Exactly what the printed curl command sends: the written review file, trusted by the
    // written CA.
    let ca = std::fs::read(&files.ca_cert).unwrap();
    let mut client = h1(addr, &ca).await;
    let body = std::fs::read(&files.review).unwrap();
    let (status, review) = read(
        client
            .send_request(review_request("/mutate", body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{review}");
    assert_eq!(
        review["response"]["uid"],
        "12df998f-5f20-4add-be10-fb0294891c8f"
    );
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["patchType"], "JSONPatch", "{review}");
    drop(client);

    assert!(
        app.stop().await,
        "nothing was in flight, so everything drained"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the webhook listener is closed once stopped"
    );
}
