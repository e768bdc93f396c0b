//! Fuzzes the running daemon's API with schemathesis (PyPI, pinned in tools/test.sh and
//! installed by tools/pyenv.sh into /var/tmp/tollgate-venv) on loopback with a valid
//! operator token, from the OpenAPI document the daemon serves: no 5xx, every status,
//! content type, header and body as the document says. Skips visibly when schemathesis
//! is not installed (fails under `TOLLGATE_REQUIRE_TOOLS=1`).

use std::process::Command;

use crate::common::tools;
use crate::common::*;

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let Some(st) = tools::venv_bin("schemathesis", "tools/pyenv.sh 'schemathesis==4.32.5'") else {
        return;
    };
    let ws = Ws::hand_with("api_tokens_file = \"tokens.csv\"\n");
    let op = ws.add_token("fuzz", "operator");
    let d = Daemon::start(&ws);
    let auth = format!("Bearer {op}");
    // Some state to read: a committed file, a failed one, a closed period with bills.
    ws.drop_file(
        "cdr-1.csv",
        &cdr_file(&[
            "r1,A1,voice,31612345678,31201234567,2026-10-05T10:00:00Z,90,",
            "r2,A2,sms,31612345678,31201234567,2026-10-06T10:00:00Z,,",
            "r3,A9,voice,31612345670,31201234567,2026-10-08T11:00:00Z,10,",
        ]),
    );
    ws.drop_file("broken.csv", b"what,is,this\n");
    d.wait_until("files processed", || {
        ws.names("done").len() == 1 && ws.names("failed").len() == 2
    });
    let r = http_request(
        d.addr,
        "POST",
        "/api/v1/cycles/2026-10/close?issueDate=2026-11-26",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Documents beside one bill's JSON, so the download routes answer 200 too.
    std::fs::write(
        ws.invoices("2026-10").join("2026-000001.xml"),
        "<Invoice/>\n",
    )
    .unwrap();
    std::fs::write(ws.invoices("2026-10").join("2026-000001.pdf"), "%PDF-1.7\n").unwrap();
    let doc = http_request(
        d.addr,
        "GET",
        "/api/v1/openapi.json",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(doc.status, 200);
    let schema = ws.root.join("openapi.json");
    std::fs::write(&schema, &doc.body).unwrap();

    let out = Command::new(&st)
        .args(["run", schema.to_str().unwrap()])
        .args(["--url", &format!("http://{}", d.addr)])
        .args(["--header", &format!("Authorization: {auth}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "40", "--seed", "20261126", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report-dir", ws.root.join("schemathesis-report").to_str().unwrap()])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache (`.schemathesis/`) goes into the workspace, not the project.
        .current_dir(&ws.root)
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        d.log()
    );
    assert!(d.alive());
    assert!(!d.log().contains("panicked"), "{}", d.log());
    // Requests are logged by route; the fuzzer's numbers never reach the log.
    assert!(d.log().contains("api request"));
    d.stop();
}
