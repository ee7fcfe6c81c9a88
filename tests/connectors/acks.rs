//! ERP acknowledgements read by `service::ack_poll` from a real
//! folder: the local filesystem, the in-process SFTP server and, when present, OpenSSH. Every
//! rule is checked on every target; the database rules on SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orderflow::app::App;
use orderflow::connectors::Registry;
use orderflow::domain::connection::Connection;
use orderflow::domain::export::{Export, ExportStatus};
use orderflow::domain::org::Org;
use orderflow::domain::page::PageRequest;
use orderflow::domain::user::Role;
use orderflow::service::ack_poll::{AckCounts, AckPollError};
use orderflow::workers::delivery::Step;
use serde_json::{Value, json};

use crate::common::{TestApp, TestDb, spawn_app_on, test_settings};
use crate::sftp_openssh::{self, Folder, Sshd};
use crate::sftp_server::{PASSWORD, TestSftpServer, USER};

const CONNECTOR: &str = "/api/v1/connectors/dropzone-json-v1";

/// Where the ERP's side of the connection lives.
enum Target {
    Filesystem,
    InProcess(Box<TestSftpServer>),
    OpenSsh(Sshd),
}

/// The ack folder as the ERP sees it: a local path, and the owner files must have (OpenSSH
/// serves them as its own user).
struct Erp {
    acks: PathBuf,
    owner: Option<(u32, u32)>,
}

impl Erp {
    /// Writes a file the way a careful ERP does: a `.tmp` first, then a rename.
    fn write(&self, name: &str, body: &[u8]) {
        let tmp = self.acks.join(format!("{name}.writing.tmp"));
        std::fs::write(&tmp, body).unwrap();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).unwrap();
        }
        std::fs::rename(&tmp, self.acks.join(name)).unwrap();
    }

    fn json(&self, name: &str, body: Value) {
        self.write(name, body.to_string().as_bytes());
    }

    /// Regular files in the ack folder (`""`) or one of its subfolders.
    fn files(&self, sub: &str) -> BTreeSet<String> {
        let dir = self.acks.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return BTreeSet::new();
        };
        entries
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn read(&self, sub: &str, name: &str) -> String {
        std::fs::read_to_string(self.acks.join(sub).join(name)).unwrap()
    }
}

/// An app with one org whose dropzone connection has an `ack_path`.
struct Bed {
    app: TestApp,
    org: Org,
    token: String,
    erp: Erp,
    connection: Connection,
    _target: Target,
    _cleanup: Option<Folder>,
}

fn local_folder(dir: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    }
    dir.to_owned()
}

async fn bed(db: TestDb, target: Target, ack_path: bool) -> Bed {
    let app = spawn_app_on(db, &[("CONNECTOR_BLOCKED_NETWORKS", "")]).await;
    let (org, _, token) = app.org_with("acme", Role::Admin).await;
    let mut cleanup = None;
    let (mut config, acks, owner) = match &target {
        Target::Filesystem => {
            let root = app.dropzone_root.path().join("acme");
            local_folder(&root.join("out"), None);
            (
                json!({"mode": "filesystem", "export_path": "/out", "ack_path": "/acks"}),
                local_folder(&root.join("acks"), None),
                None,
            )
        }
        Target::InProcess(server) => {
            server.dir("/out");
            (
                json!({"mode": "sftp", "host": "127.0.0.1", "port": server.port,
                       "username": USER, "password": PASSWORD, "export_path": "/out",
                       "ack_path": "/acks", "timeout_secs": 5}),
                server.dir("/acks"),
                None,
            )
        }
        Target::OpenSsh(sshd) => {
            let (path, dir) = sshd.folder(0o755);
            cleanup = Some(Folder(dir.clone()));
            let owner = Some(sftp_openssh::user());
            local_folder(&dir.join("out"), owner);
            (
                json!({"mode": "sftp", "host": "127.0.0.1", "port": sshd.port,
                       "username": sftp_openssh::USER, "password": sftp_openssh::PASSWORD,
                       "export_path": format!("{path}/out"), "ack_path": format!("{path}/acks"),
                       "timeout_secs": 10}),
                local_folder(&dir.join("acks"), owner),
                owner,
            )
        }
    };
    if !ack_path {
        config.as_object_mut().unwrap().remove("ack_path");
    }
    let resp = app.post_json(CONNECTOR, &token, &config).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let connection = app
        .store()
        .active_connection(org.id)
        .await
        .unwrap()
        .unwrap();
    Bed {
        app,
        org,
        token,
        erp: Erp { acks, owner },
        connection,
        _target: target,
        _cleanup: cleanup,
    }
}

impl Bed {
    /// Pushes `n` approved drafts; their exports, PENDING.
    async fn pushed(&self, n: usize) -> Vec<Export> {
        let mut ids = Vec::new();
        for i in 0..n {
            let body = json!({"external_order_number": format!("PO-{i}"),
                "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]});
            let draft: Value = self
                .app
                .post_json("/api/v1/draft-orders", &self.token, &body)
                .await
                .json()
                .await
                .unwrap();
            let id = draft["id"].as_str().unwrap().to_owned();
            let resp = self
                .app
                .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &self.token)
                .await;
            assert_eq!(resp.status(), 200);
            let resp = self
                .app
                .post_empty(&format!("/api/v1/draft-orders/{id}/push"), &self.token)
                .await;
            assert_eq!(resp.status(), 202);
            let push: Value = resp.json().await.unwrap();
            ids.push(push["erp_export_id"].as_str().unwrap().parse().unwrap());
        }
        let mut out = Vec::new();
        for id in ids {
            out.push(self.export(id).await);
        }
        out
    }

    /// Pushes and delivers `n` drafts; their exports, SENT.
    async fn sent(&self, n: usize) -> Vec<Export> {
        let pushed = self.pushed(n).await;
        self.deliver().await;
        let mut out = Vec::new();
        for e in pushed {
            let e = self.export(e.id).await;
            assert_eq!(e.status, ExportStatus::Sent);
            out.push(e);
        }
        out
    }

    async fn deliver(&self) {
        for step in self.app.deliver_all().await {
            assert!(matches!(step, Step::Sent(_)), "{step:?}");
        }
    }

    async fn export(&self, id: uuid::Uuid) -> Export {
        self.app
            .store()
            .export(self.org.id, id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn poll(&self) -> AckCounts {
        self.app
            .app
            .ack_polls
            .poll_once(&self.connection)
            .await
            .unwrap()
    }

    async fn draft(&self, e: &Export) -> Value {
        self.app
            .get_json(
                &format!("/api/v1/draft-orders/{}", e.draft_order_id),
                &self.token,
            )
            .await
    }

    /// How many audit rows of each action the org has.
    async fn audit(&self) -> BTreeMap<String, usize> {
        let rows = self
            .app
            .store()
            .list_audit(
                self.org.id,
                None,
                PageRequest::parse(Some("200"), None).unwrap(),
            )
            .await
            .unwrap()
            .items;
        let mut counts = BTreeMap::new();
        for row in rows {
            *counts.entry(row.action).or_default() += 1;
        }
        counts
    }
}

fn counts(
    processed: u64,
    rejected: u64,
    malformed: u64,
    unmatched: u64,
    waiting: u64,
) -> AckCounts {
    AckCounts {
        processed,
        rejected,
        malformed,
        unmatched,
        waiting,
    }
}

fn ack(name: &str) -> String {
    format!("ack_{name}")
}

fn error(name: &str) -> String {
    format!("error_{name}")
}

/// Every acknowledgement rule in three polls, against one target.
async fn every_rule(bed: Bed) {
    let e = bed.sent(7).await;
    // Another org's SENT export: its name in this org's folder matches nothing.
    let other = {
        let org = bed.app.org("globex").await;
        let admin = bed.app.user(&org, "admin@globex.test", Role::Admin).await;
        let token = bed.app.token_for(&admin);
        local_folder(&bed.app.dropzone_root.path().join("globex/out"), None);
        let resp = bed
            .app
            .post_json(
                CONNECTOR,
                &token,
                &json!({"mode": "filesystem", "export_path": "/out"}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let body = json!({"external_order_number": "G-1",
            "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]});
        let draft: Value = bed
            .app
            .post_json("/api/v1/draft-orders", &token, &body)
            .await
            .json()
            .await
            .unwrap();
        let id = draft["id"].as_str().unwrap();
        bed.app
            .post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &token)
            .await;
        let push: Value = bed
            .app
            .post_empty(&format!("/api/v1/draft-orders/{id}/push"), &token)
            .await
            .json()
            .await
            .unwrap();
        bed.deliver().await;
        let id = push["erp_export_id"].as_str().unwrap().parse().unwrap();
        bed.app.store().export(org.id, id).await.unwrap().unwrap()
    };
    let pending = bed.pushed(1).await.remove(0);

    let erp = &bed.erp;
    erp.json(
        &ack(&e[0].file_name),
        json!({"status": "ACKED", "erp_order_id": "SO-1000",
        "processed_at": "2026-12-01T10:00:00Z"}),
    );
    erp.json(
        &error(&e[1].file_name),
        json!({"status": "FAILED", "error_code": "CUST_UNKNOWN",
        "message": "Customer C-1001 is not known", "processed_at": "2026-12-01T10:01:00Z"}),
    );
    erp.write(&ack(&e[2].file_name), b"{\"status\": \"ACKED\", ");
    erp.json(
        &error(&e[3].file_name),
        json!({"status": "ACKED", "erp_order_id": "SO-3"}),
    );
    let mut big = br#"{"status": "ACKED", "erp_order_id": "SO-4", "pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    big.extend(br#""}"#);
    erp.write(&ack(&e[4].file_name), &big);
    // Longer than one SFTP read (32 KiB), well under the limit: read whole and applied.
    let mut long = br#"{"status": "ACKED", "erp_order_id": "SO-6", "pad": ""#.to_vec();
    long.extend(std::iter::repeat_n(b'y', 200 * 1024));
    long.extend(br#""}"#);
    erp.write(&ack(&e[6].file_name), &long);
    erp.json(
        &ack(&e[5].file_name),
        json!({"status": "BOOKED", "erp_order_id": "SO-5"}),
    );
    erp.json(
        "ack_sales_order_00000000-0000-0000-0000-000000000000_20261201T000000Z.json",
        json!({"status": "ACKED", "erp_order_id": "SO-X"}),
    );
    erp.json(
        &ack(&other.file_name),
        json!({"status": "ACKED", "erp_order_id": "SO-G"}),
    );
    erp.json(
        &ack(&pending.file_name),
        json!({"status": "ACKED", "erp_order_id": "SO-P"}),
    );
    erp.write(
        &format!("{}.tmp", ack(&e[5].file_name)),
        b"{\"status\": \"ACK",
    );
    erp.write("notes.txt", b"not for us");

    assert_eq!(bed.poll().await, counts(2, 1, 4, 2, 1));
    assert_eq!(
        bed.export(e[6].id).await.erp_order_id.as_deref(),
        Some("SO-6")
    );

    let acked = bed.export(e[0].id).await;
    assert_eq!(acked.status, ExportStatus::Acked);
    assert_eq!(acked.erp_order_id.as_deref(), Some("SO-1000"));
    assert_eq!(bed.draft(&e[0]).await["erp_order_id"], "SO-1000");
    let api: Value = bed
        .app
        .get_json(&format!("/api/v1/exports/{}", e[0].id), &bed.token)
        .await;
    assert_eq!(api["status"], "ACKED");
    assert_eq!(api["erp_order_id"], "SO-1000");

    let rejected = bed.export(e[1].id).await;
    assert_eq!(rejected.status, ExportStatus::Failed);
    assert_eq!(
        rejected.error_json,
        Some(json!({"code": "ERP_REJECTED", "error_code": "CUST_UNKNOWN",
            "message": "Customer C-1001 is not known", "processed_at": "2026-12-01T10:01:00Z"}))
    );
    assert_eq!(bed.draft(&e[1]).await["status"], "ERROR");
    for untouched in &e[2..6] {
        let now = bed.export(untouched.id).await;
        assert_eq!(now.status, ExportStatus::Sent, "{}", untouched.file_name);
        assert_eq!(now.erp_order_id, None);
    }
    assert_eq!(bed.export(pending.id).await.status, ExportStatus::Pending);
    let theirs = bed
        .app
        .store()
        .export(other.org_id, other.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        theirs.status,
        ExportStatus::Sent,
        "another org's export changed"
    );

    assert_eq!(
        erp.files(""),
        BTreeSet::from([
            ack(&pending.file_name),
            format!("{}.tmp", ack(&e[5].file_name)),
            "notes.txt".to_owned(),
        ])
    );
    assert_eq!(
        erp.files("processed"),
        BTreeSet::from([
            ack(&e[0].file_name),
            error(&e[1].file_name),
            ack(&e[6].file_name)
        ])
    );
    assert_eq!(
        erp.files("error"),
        BTreeSet::from([
            ack(&e[2].file_name),
            error(&e[3].file_name),
            ack(&e[4].file_name),
            ack(&e[5].file_name),
            "ack_sales_order_00000000-0000-0000-0000-000000000000_20261201T000000Z.json".to_owned(),
            ack(&other.file_name),
        ])
    );
    let audit = bed.audit().await;
    assert_eq!(audit.get("EXPORT_ACKED"), Some(&2));
    assert_eq!(audit.get("EXPORT_REJECTED"), Some(&1));
    assert_eq!(audit.get("ACK_FILE_MALFORMED"), Some(&4));
    assert_eq!(audit.get("ACK_FILE_UNMATCHED"), Some(&2));

    // The waiting ack applies once its export is SENT.
    bed.deliver().await;
    assert_eq!(bed.poll().await, counts(1, 0, 0, 0, 0));
    assert_eq!(
        bed.export(pending.id).await.erp_order_id.as_deref(),
        Some("SO-P")
    );

    // Files for exports already ACKED or FAILED (a second opinion, or a file seen again after
    // a crash before its move) change nothing and never overwrite the earlier file.
    let first_ack = erp.read("processed", &ack(&e[0].file_name));
    erp.json(
        &ack(&e[0].file_name),
        json!({"status": "ACKED", "erp_order_id": "SO-9999"}),
    );
    erp.write(
        &error(&e[1].file_name),
        erp.read("processed", &error(&e[1].file_name)).as_bytes(),
    );
    assert_eq!(bed.poll().await, counts(1, 1, 0, 0, 0));
    erp.json(
        &ack(&e[0].file_name),
        json!({"status": "ACKED", "erp_order_id": "SO-9998"}),
    );
    assert_eq!(bed.poll().await, counts(1, 0, 0, 0, 0));
    assert_eq!(erp.read("processed", &ack(&e[0].file_name)), first_ack);
    assert!(
        erp.read("processed", &format!("{}.1", ack(&e[0].file_name)))
            .contains("SO-9999")
    );
    assert!(
        erp.read("processed", &format!("{}.2", ack(&e[0].file_name)))
            .contains("SO-9998")
    );
    assert!(
        erp.files("processed")
            .contains(&format!("{}.1", error(&e[1].file_name)))
    );
    assert_eq!(
        bed.export(e[0].id).await.erp_order_id.as_deref(),
        Some("SO-1000")
    );
    assert_eq!(bed.export(e[1].id).await.status, ExportStatus::Failed);
    let audit = bed.audit().await;
    assert_eq!(audit.get("EXPORT_ACKED"), Some(&3), "{audit:?}");
    assert_eq!(audit.get("EXPORT_REJECTED"), Some(&1), "{audit:?}");

    // The rejected draft can be pushed again.
    let resp = bed
        .app
        .post_empty(
            &format!("/api/v1/draft-orders/{}/retry-push", e[1].draft_order_id),
            &bed.token,
        )
        .await;
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn every_rule_on_the_filesystem_sqlite() {
    every_rule(bed(TestDb::sqlite().await, Target::Filesystem, true).await).await;
}

#[tokio::test]
async fn every_rule_on_the_filesystem_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    every_rule(bed(db, Target::Filesystem, true).await).await;
}

#[tokio::test]
async fn every_rule_over_sftp() {
    let server = TestSftpServer::start().await;
    every_rule(
        bed(
            TestDb::sqlite().await,
            Target::InProcess(Box::new(server)),
            true,
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn every_rule_over_sftp_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let server = TestSftpServer::start().await;
    every_rule(bed(db, Target::InProcess(Box::new(server)), true).await).await;
}

#[tokio::test]
async fn every_rule_over_openssh() {
    if !sftp_openssh::usable() {
        return;
    }
    every_rule(bed(TestDb::sqlite().await, Target::OpenSsh(Sshd::start()), true).await).await;
}

/// Three acks in one folder, and a malformed file beside a valid one: all handled in one
/// poll, each on its own merits.
async fn three_acks_and_a_malformed_one(bed: Bed) {
    let e = bed.sent(4).await;
    for (i, export) in e[..3].iter().enumerate() {
        bed.erp.json(
            &ack(&export.file_name),
            json!({"status": "ACKED", "erp_order_id": format!("SO-{i}")}),
        );
    }
    bed.erp.write(&ack(&e[3].file_name), b"\x00\xff not json");
    assert_eq!(bed.poll().await, counts(3, 0, 1, 0, 0));
    for (i, export) in e[..3].iter().enumerate() {
        let now = bed.export(export.id).await;
        assert_eq!(now.status, ExportStatus::Acked);
        assert_eq!(now.erp_order_id, Some(format!("SO-{i}")));
        assert!(now.acked_at.is_some());
    }
    assert_eq!(bed.export(e[3].id).await.status, ExportStatus::Sent);
    assert!(bed.erp.files("").is_empty());
    // Nothing left: the next poll finds nothing.
    assert_eq!(bed.poll().await, AckCounts::default());
}

#[tokio::test]
async fn three_acks_and_a_malformed_one_on_the_filesystem() {
    three_acks_and_a_malformed_one(bed(TestDb::sqlite().await, Target::Filesystem, true).await)
        .await;
}

#[tokio::test]
async fn three_acks_and_a_malformed_one_over_sftp() {
    let server = TestSftpServer::start().await;
    three_acks_and_a_malformed_one(
        bed(
            TestDb::sqlite().await,
            Target::InProcess(Box::new(server)),
            true,
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn three_acks_and_a_malformed_one_over_openssh() {
    if !sftp_openssh::usable() {
        return;
    }
    three_acks_and_a_malformed_one(
        bed(TestDb::sqlite().await, Target::OpenSsh(Sshd::start()), true).await,
    )
    .await;
}

#[tokio::test]
async fn a_connection_without_ack_path_is_not_polled_and_its_files_stay() {
    for target in [
        Target::Filesystem,
        Target::InProcess(Box::new(TestSftpServer::start().await)),
    ] {
        let bed = bed(TestDb::sqlite().await, target, false).await;
        let e = bed.sent(1).await.remove(0);
        // A folder that happens to be where an ack folder would be.
        local_folder(&bed.erp.acks, None);
        bed.erp.json(
            &ack(&e.file_name),
            json!({"status": "ACKED", "erp_order_id": "SO-1"}),
        );
        assert!(matches!(
            bed.app.app.ack_polls.poll_once(&bed.connection).await,
            Err(AckPollError::NoInbox)
        ));
        assert_eq!(bed.erp.files(""), BTreeSet::from([ack(&e.file_name)]));
        assert!(bed.erp.files("processed").is_empty());
        assert_eq!(bed.export(e.id).await.status, ExportStatus::Sent);
        let resp = bed
            .app
            .post_empty(&format!("{CONNECTOR}/poll-acks"), &bed.token)
            .await;
        assert_eq!(resp.status(), 409);
    }
}

/// Two workers (two apps on one database) poll the same connection at once, again and again:
/// every file is applied once and moved once.
async fn two_pollers(db: TestDb) {
    let server = TestSftpServer::start().await;
    let bed = bed(db, Target::InProcess(Box::new(server)), true).await;
    let e = bed.sent(40).await;
    let other_root = tempfile::tempdir().unwrap();
    let second = App::assemble(
        test_settings(other_root.path(), &[("CONNECTOR_BLOCKED_NETWORKS", "")]),
        bed.app.db.store.clone(),
        Registry::default(),
    )
    .await
    .unwrap();
    for (i, export) in e.iter().enumerate() {
        if i % 4 == 3 {
            bed.erp.json(
                &error(&export.file_name),
                json!({"status": "FAILED", "error_code": "E",
                "message": "no"}),
            );
        } else {
            bed.erp.json(
                &ack(&export.file_name),
                json!({"status": "ACKED", "erp_order_id": format!("SO-{i}")}),
            );
        }
    }
    let poller = |app: Arc<App>, connection: Connection| async move {
        let mut total = AckCounts::default();
        let mut busy = 0;
        for _ in 0..20 {
            match app.ack_polls.poll_once(&connection).await {
                Ok(c) => {
                    total.processed += c.processed;
                    total.rejected += c.rejected;
                    total.malformed += c.malformed;
                    total.unmatched += c.unmatched;
                }
                Err(AckPollError::Busy) => busy += 1,
                Err(err) => panic!("{err}"),
            }
        }
        (total, busy)
    };
    let (a, b) = tokio::join!(
        tokio::spawn(poller(bed.app.app.clone(), bed.connection.clone())),
        tokio::spawn(poller(second, bed.connection.clone())),
    );
    let ((a, _), (b, _)) = (a.unwrap(), b.unwrap());
    assert_eq!(a.processed + b.processed, 30, "{a:?} {b:?}");
    assert_eq!(a.rejected + b.rejected, 10, "{a:?} {b:?}");
    assert_eq!(a.malformed + b.malformed + a.unmatched + b.unmatched, 0);
    assert!(bed.erp.files("").is_empty());
    assert_eq!(bed.erp.files("processed").len(), 40, "a file moved twice");
    assert!(bed.erp.files("error").is_empty());
    let audit = bed.audit().await;
    assert_eq!(audit.get("EXPORT_ACKED"), Some(&30));
    assert_eq!(audit.get("EXPORT_REJECTED"), Some(&10));
}

#[tokio::test]
async fn two_pollers_apply_each_file_once_sqlite() {
    two_pollers(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn two_pollers_apply_each_file_once_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    two_pollers(db).await;
}
