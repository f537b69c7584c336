//! `nagare bench` against a real server: a short produce, a catch-up consume with both
//! clients and a short end-to-end run each end with a JSON summary whose counts add up, and
//! `loopback` measures something. Figures are not asserted (see BENCHMARKS.md).

mod common;

use std::process::Command;

use common::{nagare_bin, TestServer};

fn bench(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let out = Command::new(nagare_bin())
        .arg("bench")
        .args(args)
        .env("NAGARE_BOOTSTRAP_SERVER", server.bootstrap())
        .output()
        .expect("spawn nagare bench");
    assert!(
        out.status.success(),
        "nagare bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.current_output()
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary on stdout")
}

#[test]
fn produce_consume_e2e_and_loopback() {
    let server = TestServer::start(&[]);
    let produced = bench(
        &server,
        &[
            "produce",
            "--topic",
            "b",
            "--partitions",
            "2",
            "--count",
            "5000",
            "--record-size",
            "200",
            "--producers",
            "2",
        ],
    );
    assert_eq!(produced["records"], 5000);
    assert_eq!(produced["errors"], 0);
    assert_eq!(produced["ack_latency"]["count"], 5000);
    for client in ["rdkafka", "raw"] {
        let consumed = bench(
            &server,
            &[
                "consume",
                "--topic",
                "b",
                "--client",
                client,
                "--consumers",
                "2",
            ],
        );
        assert_eq!(consumed["records"], 5000, "{client}: {consumed}");
    }
    let e2e = bench(
        &server,
        &[
            "e2e",
            "--topic",
            "e",
            "--records-per-sec",
            "2000",
            "--duration",
            "1",
            "--record-size",
            "100",
        ],
    );
    let acked = e2e["produce"]["records"].as_u64().expect("acked count");
    assert!(acked > 1000, "{e2e}");
    assert_eq!(e2e["consume"]["records"].as_u64(), Some(acked), "{e2e}");
    assert_eq!(e2e["e2e_latency"]["count"].as_u64(), Some(acked), "{e2e}");
    let out = Command::new(nagare_bin())
        .args(["bench", "loopback", "--bytes", "10000000", "--repeat", "1"])
        .output()
        .expect("spawn nagare bench loopback");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["mb_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
}
