//! An ERP's HTTPS endpoint, in process: certificates made by `rcgen` (a private CA, a server
//! certificate for 127.0.0.1 and localhost, client certificates for mTLS), rustls, HTTP/1.1 and
//! HTTP/2, and scripted answers (statuses, delays, redirects, a connection reset mid-answer).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// A certificate authority the tests make certificates with.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A leaf certificate for these names (IP strings become IP SANs).
    pub fn leaf(&self, common_name: &str, names: &[&str]) -> Pem {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let issuer: &Issuer<'_, KeyPair> = &self.issuer;
        let cert = params.signed_by(&key, issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This status, body and extra headers.
    Status(u16, String, Vec<(String, String)>),
    /// Wait, then answer 200.
    Delay(Duration),
    /// Send the head and part of the body, then drop the connection.
    ResetMidBody,
}

impl Answer {
    pub fn status(code: u16, body: &str) -> Self {
        Answer::Status(code, body.to_owned(), Vec::new())
    }
}

/// A request the ERP received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    pub version: hyper::Version,
}

/// The running ERP.
pub struct HttpErp {
    pub addr: SocketAddr,
    pub ca: Arc<TestCa>,
    pub received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// How the ERP's TLS is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Plain,
    Https,
    /// https, and a client certificate signed by the ERP's CA is required.
    Mutual,
}

impl HttpErp {
    /// Starts on 127.0.0.1:0.
    pub async fn start(tls: Tls) -> Self {
        let ca = Arc::new(TestCa::new("OrderFlow Test ERP CA"));
        let server = ca.leaf("erp.test", &["localhost", "127.0.0.1"]);
        let acceptor = (tls != Tls::Plain).then(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap();
            let builder = if tls == Tls::Mutual {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from(ca.der())).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_no_client_auth()
            };
            let mut config = builder
                .with_single_cert(
                    vec![CertificateDer::from(server.cert_der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone())),
                )
                .unwrap();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (rx, sc) = (received.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let (rx, sc, acceptor) = (rx.clone(), sc.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(req, rx.clone(), sc.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            ca,
            received,
            script,
            _stop: stop,
        }
    }

    /// `https://127.0.0.1:<port>/orders` (or http for a plain ERP).
    pub fn url(&self, tls: Tls) -> String {
        let scheme = if tls == Tls::Plain { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}/orders", self.addr.port())
    }

    /// Answers the next requests with these, in order (then 200 with an order number).
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

async fn handle(
    req: Request<Incoming>,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
) -> Result<Response<Body>, std::io::Error> {
    let version = req.version();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let n = {
        let mut r = received.lock().unwrap();
        r.push(Received {
            headers,
            body,
            version,
        });
        r.len()
    };
    let answer = script.lock().unwrap().pop_front();
    let ok = || {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(full(format!(r#"{{"order": {{"number": "SO-{n}"}}}}"#)))
            .unwrap()
    };
    Ok(match answer {
        None => ok(),
        Some(Answer::Delay(wait)) => {
            tokio::time::sleep(wait).await;
            ok()
        }
        Some(Answer::Status(code, text, extra)) => {
            let mut b = Response::builder().status(code);
            for (k, v) in extra {
                b = b.header(k, v);
            }
            b.body(full(text)).unwrap()
        }
        Some(Answer::ResetMidBody) => {
            let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                Ok(Frame::data(Bytes::from_static(b"{\"order\": {\"num"))),
                Err(std::io::Error::other("reset")),
            ];
            let stream = futures::stream::iter(chunks);
            Response::builder()
                .status(200)
                .header("content-length", "4096")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
    })
}
