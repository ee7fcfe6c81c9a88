//! HTTP_JSON_V1 against a real HTTPS server in process: signing checked by the
//! reference Standard Webhooks implementation, every status class, timeouts, a reset mid-answer,
//! redirects, mTLS, a wrong CA, blocked addresses and the connection test.

use std::sync::Arc;
use std::time::Duration;

use orderflow::connectors::http_json_v1::HttpJsonV1;
use orderflow::connectors::http_json_v1::config::generate_secret;
use orderflow::connectors::{
    Connector, ConnectorContext, ConnectorEnv, ConnectorError, Delivered, Delivery, ErrorCode,
    Rendered, run_test,
};
use orderflow::domain::ack::AckOutcome;
use orderflow::domain::org::Slug;
use orderflow::formats::json_v1::render;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::http_erp::{Answer, HttpErp, TestCa, Tls};
use crate::common::sample;

fn context(blocked: &str, plain: bool) -> (ConnectorContext, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let blocked = orderflow::config::parse_networks(blocked).unwrap();
    let env = ConnectorEnv::new(root.path().to_owned(), blocked).with_plain_http(plain);
    let ctx = ConnectorContext {
        org_id: Uuid::new_v4(),
        org_slug: Slug::parse("acme").unwrap(),
        connection: None,
        env: Arc::new(env),
    };
    (ctx, root)
}

/// Loopback is where the test ERP lives; block only a documentation network.
const OPEN: &str = "192.0.2.0/24";

fn base(erp: &HttpErp, secret: &str) -> Value {
    json!({"url": erp.url(Tls::Https), "signing_secret": secret,
           "ca_certificate_pem": erp.ca.pem(), "timeout_secs": 2})
}

fn with(mut value: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    value
}

async fn deliver(
    ctx: &ConnectorContext,
    config: Value,
) -> (Result<Delivered, ConnectorError>, Rendered, Uuid) {
    let connector = HttpJsonV1::default();
    let config = sample::config(config);
    let validated = connector.validate(&config, &ctx.env.validation());
    let config = validated.unwrap_or(config);
    let rendered = Rendered::new(render(&sample::order("acme")).unwrap());
    let export_id = Uuid::new_v4();
    let delivery = Delivery {
        export_id,
        file_name: "sales_order_x.json",
        content: &rendered,
        content_type: "application/json",
    };
    let result = connector.deliver(ctx, &delivery, &config).await;
    (result, rendered, export_id)
}

#[tokio::test]
async fn a_delivery_is_signed_per_standard_webhooks_and_carries_the_export() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let secret = generate_secret();
    let config = with(
        base(&erp, &secret),
        json!({"headers": {"X-Api-Key": "erp-key-5521"}}),
    );
    let (result, rendered, export_id) = deliver(&ctx, config).await;
    let delivered = result.unwrap();
    assert_eq!(delivered.ack, None, "ack_mode none never acknowledges");
    assert_eq!(delivered.dropzone_path, erp.url(Tls::Https));
    let got = erp.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(
        req.body, rendered.bytes,
        "the body is the export JSON v1, byte for byte"
    );
    let header = |name: &str| req.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("webhook-id"), export_id.to_string());
    assert_eq!(header("idempotency-key"), export_id.to_string());
    assert_eq!(header("x-api-key"), "erp-key-5521");
    assert_eq!(
        req.version,
        hyper::Version::HTTP_2,
        "HTTP/2 is used when offered"
    );
    // The reference implementation accepts our signature...
    let webhook = standardwebhooks::Webhook::new(&secret).unwrap();
    webhook.verify(&req.body, &req.headers).unwrap();
    // ...and refuses it for another body or another secret.
    assert!(webhook.verify(b"{}", &req.headers).is_err());
    let other = standardwebhooks::Webhook::new(&generate_secret()).unwrap();
    assert!(other.verify(&req.body, &req.headers).is_err());
}

#[tokio::test]
async fn a_retry_keeps_the_message_id_so_the_erp_can_drop_the_duplicate() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let connector = HttpJsonV1::default();
    let config = sample::config(base(&erp, &generate_secret()));
    let rendered = Rendered::new(render(&sample::order("acme")).unwrap());
    let delivery = Delivery {
        export_id: Uuid::new_v4(),
        file_name: "f.json",
        content: &rendered,
        content_type: "application/json",
    };
    erp.script([Answer::status(503, "busy")]);
    let first = connector
        .deliver(&ctx, &delivery, &config)
        .await
        .unwrap_err();
    assert_eq!(first.code, ErrorCode::ErpUnavailable);
    connector.deliver(&ctx, &delivery, &config).await.unwrap();
    let got = erp.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].headers.get("webhook-id"),
        got[1].headers.get("webhook-id")
    );
}

#[tokio::test]
async fn response_mode_reads_the_order_number_at_the_pointer() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let config = with(
        base(&erp, &generate_secret()),
        json!({"ack_mode": "response", "erp_order_id_pointer": "/order/number"}),
    );
    let (result, _, _) = deliver(&ctx, config.clone()).await;
    assert_eq!(
        result.unwrap().ack,
        Some(AckOutcome::Acked {
            erp_order_id: Some("SO-1".into()),
            processed_at: None
        })
    );
    // A 2xx without the pointer's value is SENT, not ACKED.
    erp.script([Answer::status(202, r#"{"queued": true}"#)]);
    let (result, _, _) = deliver(&ctx, config).await;
    assert_eq!(result.unwrap().ack, None);
}

#[tokio::test]
async fn each_status_class_maps_to_its_code_and_retry_class() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let config = base(&erp, &generate_secret());
    let long = "x".repeat(5000);
    let cases: Vec<(Answer, ErrorCode)> = vec![
        (Answer::status(500, "oops"), ErrorCode::ErpUnavailable),
        (Answer::status(502, ""), ErrorCode::ErpUnavailable),
        (Answer::status(408, ""), ErrorCode::ErpUnavailable),
        (Answer::status(425, ""), ErrorCode::ErpUnavailable),
        (
            Answer::Status(
                429,
                "slow down".into(),
                vec![("retry-after".into(), "7".into())],
            ),
            ErrorCode::ErpUnavailable,
        ),
        (Answer::status(400, &long), ErrorCode::ErpRejected),
        (Answer::status(401, "no"), ErrorCode::ErpRejected),
        (Answer::status(404, "no"), ErrorCode::ErpRejected),
        (
            Answer::status(422, r#"{"error": "bad sku"}"#),
            ErrorCode::ErpRejected,
        ),
        (
            Answer::Status(
                302,
                String::new(),
                vec![("location".into(), "https://elsewhere.example/x".into())],
            ),
            ErrorCode::RedirectRefused,
        ),
        (Answer::status(307, ""), ErrorCode::RedirectRefused),
    ];
    for (answer, code) in cases {
        let before = erp.received().len();
        erp.script([answer.clone()]);
        let (result, _, _) = deliver(&ctx, config.clone()).await;
        let err = result.unwrap_err();
        assert_eq!(err.code, code, "{answer:?}: {}", err.message);
        assert_eq!(
            err.is_transient(),
            code == ErrorCode::ErpUnavailable,
            "{answer:?}"
        );
        assert_eq!(
            erp.received().len(),
            before + 1,
            "a redirect is never followed"
        );
        let details = err.details.unwrap();
        let Answer::Status(status, body, _) = &answer else {
            unreachable!()
        };
        assert_eq!(details["http_status"], json!(status));
        let kept = details["response_body"].as_str().unwrap();
        assert_eq!(
            kept,
            &body[..body.len().min(1024)],
            "the first 1 KiB is kept"
        );
        if *status == 429 {
            assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        }
        if *status == 302 {
            assert!(err.message.contains("elsewhere.example"), "{}", err.message);
        }
    }
}

#[tokio::test]
async fn timeouts_resets_and_refusals_are_transient() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let config = with(base(&erp, &generate_secret()), json!({"timeout_secs": 1}));
    erp.script([Answer::Delay(Duration::from_secs(3))]);
    let (result, _, _) = deliver(&ctx, config.clone()).await;
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::ConnectionTimeout, "{}", err.message);
    assert!(err.is_transient());

    erp.script([Answer::ResetMidBody]);
    let (result, _, _) = deliver(&ctx, config.clone()).await;
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::ConnectionLost, "{}", err.message);
    assert!(err.is_transient());

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = with(
        config,
        json!({"url": format!("https://127.0.0.1:{port}/orders")}),
    );
    let (result, _, _) = deliver(&ctx, refused).await;
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::ConnectionRefused, "{}", err.message);
    assert!(err.is_transient());
}

#[tokio::test]
async fn mutual_tls_is_required_and_satisfied() {
    let erp = HttpErp::start(Tls::Mutual).await;
    let (ctx, _root) = context(OPEN, false);
    let config = base(&erp, &generate_secret());
    let (result, _, _) = deliver(&ctx, config.clone()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err.code, ErrorCode::TlsError | ErrorCode::ConnectionLost),
        "without a client certificate: {err:?}"
    );
    assert_eq!(erp.received().len(), 0);
    // A certificate from another CA is refused too.
    let stranger = TestCa::new("Stranger CA").leaf("orderflow", &[]);
    let wrong = with(
        config.clone(),
        json!({"client_certificate_pem": stranger.cert, "client_key_pem": stranger.key}),
    );
    let (result, _, _) = deliver(&ctx, wrong).await;
    assert!(result.is_err());
    let client = erp.ca.leaf("orderflow-client", &[]);
    let good = with(
        config,
        json!({"client_certificate_pem": client.cert, "client_key_pem": client.key}),
    );
    let (result, _, _) = deliver(&ctx, good).await;
    result.unwrap();
    assert_eq!(erp.received().len(), 1);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_a_tls_error() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let other = TestCa::new("Another CA");
    let config = with(
        base(&erp, &generate_secret()),
        json!({"ca_certificate_pem": other.pem()}),
    );
    let (result, _, _) = deliver(&ctx, config.clone()).await;
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::TlsError, "{}", err.message);
    assert!(!err.is_transient());
    // The system roots do not know the test CA either.
    let mut system = config;
    system.as_object_mut().unwrap().remove("ca_certificate_pem");
    let (result, _, _) = deliver(&ctx, system).await;
    assert_eq!(result.unwrap_err().code, ErrorCode::TlsError);
    assert_eq!(erp.received().len(), 0);
}

#[tokio::test]
async fn blocked_addresses_are_never_dialled() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(orderflow::config::DEFAULT_BLOCKED_NETWORKS, false);
    let port = erp.addr.port();
    for url in [
        format!("https://127.0.0.1:{port}/orders"),
        format!("https://localhost:{port}/orders"),
        format!("https://[::ffff:127.0.0.1]:{port}/orders"),
        format!("https://2130706433:{port}/orders"),
    ] {
        let config = with(base(&erp, &generate_secret()), json!({"url": url}));
        let (result, _, _) = deliver(&ctx, config).await;
        let err = result.unwrap_err();
        assert_eq!(err.code, ErrorCode::HostBlocked, "{url}: {}", err.message);
    }
    assert_eq!(erp.received().len(), 0);
}

#[tokio::test]
async fn plain_http_only_when_the_operator_allows_it() {
    let erp = HttpErp::start(Tls::Plain).await;
    let connector = HttpJsonV1::default();
    let config =
        sample::config(json!({"url": erp.url(Tls::Plain), "signing_secret": generate_secret()}));
    let (strict, _r1) = context(OPEN, false);
    let refused = connector
        .validate(&config, &strict.env.validation())
        .unwrap_err();
    assert_eq!(refused.field, "url");
    let (ctx, _r2) = context(OPEN, true);
    let validated = connector.validate(&config, &ctx.env.validation()).unwrap();
    let result = run_test(&connector, &ctx, &validated).await;
    assert!(result.success, "{result:?}");
    // Stored while allowed, sent after the operator switched it off: refused, not sent.
    let (result, _, _) = deliver(
        &strict,
        json!({"url": erp.url(Tls::Plain), "signing_secret": generate_secret()}),
    )
    .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::ConfigUnreadable);
    assert_eq!(erp.received().len(), 1);
}

#[tokio::test]
async fn the_connection_test_posts_a_signed_event_and_reports_the_certificate() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let connector = HttpJsonV1::default();
    let secret = generate_secret();
    let config = connector
        .validate(&sample::config(base(&erp, &secret)), &ctx.env.validation())
        .unwrap();
    let result = run_test(&connector, &ctx, &config).await;
    assert!(result.success, "{result:?}");
    assert!(result.message.as_deref().unwrap().contains("200"));
    let details = result.details.clone().unwrap();
    let cert = &details["certificate"];
    assert!(
        cert["subject"].as_str().unwrap().contains("erp.test"),
        "{details}"
    );
    let days = cert["days_until_expiry"].as_i64().unwrap();
    assert!(days > 0, "{details}");
    let got = erp.received();
    assert_eq!(got.len(), 1);
    let event: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(event["type"], "connection.test");
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&got[0].body, &got[0].headers)
        .unwrap();
    // A failing endpoint fails the test with its code.
    erp.script([Answer::status(401, "who are you")]);
    let failed = run_test(&connector, &ctx, &config).await;
    assert!(!failed.success);
    assert_eq!(failed.error_code, Some(ErrorCode::ErpRejected));
    let json = serde_json::to_string(&failed).unwrap();
    assert!(!json.contains(&secret));
}

#[tokio::test]
async fn the_recorded_destination_leaves_the_query_out() {
    let erp = HttpErp::start(Tls::Https).await;
    let (ctx, _root) = context(OPEN, false);
    let url = format!("{}?token=query-secret-77", erp.url(Tls::Https));
    let config = with(base(&erp, &generate_secret()), json!({"url": url}));
    let (result, _, _) = deliver(&ctx, config.clone()).await;
    let delivered = result.unwrap();
    assert_eq!(delivered.dropzone_path, erp.url(Tls::Https));
    erp.script([Answer::ResetMidBody]);
    let (result, _, _) = deliver(&ctx, config).await;
    let err = result.unwrap_err();
    assert!(!err.message.contains("query-secret-77"), "{}", err.message);
}
