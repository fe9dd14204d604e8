//! The layering rule of ARCHITECTURE.md, checked on the workspace as Cargo sees it: nothing depends on a Lambda
//! crate or a binary (this end-to-end test crate aside, which runs them); the decision engine links no AWS SDK
//! and no Lambda runtime; the CLI and the simulator link no Lambda runtime and no EC2 or ECS SDK.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(cargo).args(args).current_dir(root).output().expect("run cargo");
    assert!(output.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The crates a package links in a normal build (no dev or build dependencies), by name.
fn linked(package: &str) -> Vec<String> {
    cargo(&["tree", "--locked", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn nothing_depends_on_a_lambda_crate_or_a_binary() {
    let metadata: Value =
        serde_json::from_str(&cargo(&["metadata", "--locked", "--no-deps", "--format-version", "1"])).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let is_lambda = |p: &Value| p["dependencies"].as_array().unwrap().iter().any(|d| d["name"] == "lambda_runtime");
    let is_binary_only = |p: &Value| {
        p["targets"].as_array().unwrap().iter().all(|t| !t["kind"].as_array().unwrap().iter().any(|k| k == "lib"))
    };
    let forbidden: Vec<&str> =
        packages.iter().filter(|p| is_lambda(p) || is_binary_only(p)).map(|p| p["name"].as_str().unwrap()).collect();
    assert!(forbidden.contains(&"executor") && forbidden.contains(&"on-signal"), "{forbidden:?}");
    let mut violations = Vec::new();
    for package in packages.iter().filter(|p| p["name"] != "gameforge-e2e") {
        for dependency in package["dependencies"].as_array().unwrap() {
            let name = dependency["name"].as_str().unwrap();
            if forbidden.contains(&name) {
                violations.push(format!("{} → {name}", package["name"].as_str().unwrap()));
            }
        }
    }
    assert!(violations.is_empty(), "depend on a Lambda crate or a binary: {violations:?}");
}

#[test]
fn the_decision_engine_links_no_aws_sdk_and_no_lambda_runtime() {
    let linked = linked("gameforge-engine");
    assert!(linked.iter().any(|c| c == "gameforge-planner"), "{linked:?}");
    let outside: Vec<&String> =
        linked.iter().filter(|c| c.starts_with("aws-") || c.starts_with("aws_") || c.starts_with("lambda")).collect();
    assert!(outside.is_empty(), "the engine links {outside:?}");
}

#[test]
fn the_cli_and_the_simulator_link_no_lambda_runtime_and_no_ec2_or_ecs_sdk() {
    for package in ["gameforge", "gameforge-simulator"] {
        let linked = linked(package);
        assert!(linked.iter().any(|c| c == "gameforge-engine"), "{package}: {linked:?}");
        for crate_name in ["lambda_runtime", "aws-sdk-ec2", "aws-sdk-ecs"] {
            assert!(!linked.iter().any(|c| c == crate_name), "{package} links {crate_name}");
        }
    }
}
