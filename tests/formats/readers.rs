//! The sample order in each format, read back by independent tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::{goldens, order, render};

/// Whether CI asked for every tool (a missing one then fails instead of skipping).
fn required() -> bool {
    std::env::var("ORDERFLOW_REQUIRE_FORMAT_TOOLS").is_ok_and(|v| v == "1")
}

/// Runs a tool; None (with a note) when it is not installed and not required.
fn run(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(program).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if !required() => {
            eprintln!("skipped: {program} is not available ({e}); CI installs it");
            None
        }
        Err(e) => panic!("{program}: {e}"),
    }
}

fn here(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file)
}

fn written(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// A Python helper's JSON output; None when Python or its module is missing (not required).
fn python(script: &str, args: &[&str]) -> Option<Value> {
    let script = here(script);
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run("python3", &all)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("ModuleNotFoundError") && !required() {
            eprintln!("skipped: {stderr}");
            return None;
        }
        panic!("{}: {stderr}", script.display());
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn ubl_orders_validate_against_the_oasis_ubl_2_1_schema() {
    let dir = tempfile::tempdir().unwrap();
    let xsd = here("tests/fixtures/ubl-2.1/xsd/maindoc/UBL-Order-2.1.xsd");
    let minimal = json!({"type": "ubl_order_2_1"});
    let full = goldens()
        .into_iter()
        .find(|(n, _)| n.ends_with(".xml"))
        .unwrap()
        .1;
    for (i, config) in [minimal, full].into_iter().enumerate() {
        let file = written(dir.path(), &format!("order{i}.xml"), &render(config));
        let Some(out) = run(
            "xmllint",
            &["--noout", "--schema", xsd.to_str().unwrap(), &file],
        ) else {
            return;
        };
        assert!(
            out.status.success(),
            "xmllint refused the UBL order: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&file).unwrap()
        );
    }
    // And the schema is really consulted: an element out of the XSD's order is refused.
    let broken = String::from_utf8(render(json!({"type": "ubl_order_2_1"})))
        .unwrap()
        .replacen(
            "<cbc:CustomizationID>",
            "<cbc:Note>x</cbc:Note><cbc:CustomizationID>",
            1,
        );
    let file = written(dir.path(), "broken.xml", broken.as_bytes());
    let out = run(
        "xmllint",
        &["--noout", "--schema", xsd.to_str().unwrap(), &file],
    )
    .unwrap();
    assert!(!out.status.success(), "an invalid order passed");
}

#[test]
fn ubl_orders_carry_the_peppol_ids_parties_and_lines() {
    let xml = String::from_utf8(render(
        goldens()
            .into_iter()
            .find(|(n, _)| n.ends_with(".xml"))
            .unwrap()
            .1,
    ))
    .unwrap();
    for expected in [
        "<cbc:CustomizationID>urn:fdc:peppol.eu:poacc:trns:order:3</cbc:CustomizationID>",
        "<cbc:ProfileID>urn:fdc:peppol.eu:poacc:bis:ordering:3</cbc:ProfileID>",
        "<cbc:ID>PO-4711+A:B?C&apos;D</cbc:ID>",
        r#"<cbc:EndpointID schemeID="0088">4000003000009</cbc:EndpointID>"#,
        r#"<cbc:EndpointID schemeID="0088">4000001000005</cbc:EndpointID>"#,
        "Müller &amp; Söhne GmbH; &quot;Großhandel&quot; &apos;Süd&apos;",
        r#"<cbc:Quantity unitCode="KGM">12.500</cbc:Quantity>"#,
        r#"<cbc:Quantity unitCode="H87">3</cbc:Quantity>"#,
        r#"<cbc:PriceAmount currencyID="EUR">3.99</cbc:PriceAmount>"#,
        "<cbc:StartDate>2027-01-20</cbc:StartDate>",
        "<cbc:ID>SKU-ÄÖÜ-1</cbc:ID>",
    ] {
        assert!(xml.contains(expected), "missing {expected} in\n{xml}");
    }
    // The line without a price has no Price element.
    let line2 = xml.split("<cac:OrderLine>").nth(2).unwrap();
    assert!(!line2.contains("PriceAmount"), "{line2}");
}

#[test]
fn edifact_is_read_back_by_pydifact_with_every_value_and_correct_counts() {
    let dir = tempfile::tempdir().unwrap();
    for (name, config) in goldens().into_iter().filter(|(n, _)| n.ends_with(".edi")) {
        let bytes = render(config);
        let encoding = if name.contains("unow") {
            "utf-8"
        } else {
            "latin-1"
        };
        let file = written(dir.path(), name, &bytes);
        let Some(read) = python("tests/formats/read_edifact.py", &[&file, encoding]) else {
            return;
        };
        let messages = read["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{name}");
        let message = &messages[0];
        assert_eq!(message["identifier"], json!(["ORDERS", "D", "96A", "UN"]));
        // UNT counts the segments from UNH to UNT, both included; its reference is UNH's.
        let segments = read["segments"].as_array().unwrap();
        assert_eq!(segments.first().unwrap()[0], "UNH");
        let unt = segments.last().unwrap();
        assert_eq!(unt[0], "UNT");
        assert_eq!(unt[1][0], json!(segments.len().to_string()), "{name}");
        assert_eq!(unt[1][1], message["reference"]);
        // UNZ counts one message and repeats UNB's reference.
        assert_eq!(read["unz"][1], json!(["1", read["control_reference"]]));
        assert_eq!(read["timestamp"], "2027-01-15T08:01:00");
        let tags: Vec<&str> = message["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[0].as_str().unwrap())
            .collect();
        let o = order();
        for tag in ["BGM", "DTM", "NAD", "CUX", "LIN", "QTY", "UNS"] {
            assert!(tags.contains(&tag), "{name}: no {tag} in {tags:?}");
        }
        assert_eq!(tags.iter().filter(|t| **t == "LIN").count(), o.lines.len());
        assert_eq!(
            tags.iter().filter(|t| **t == "PRI").count(),
            2,
            "one line has no price"
        );
        // The release character kept every special character as data.
        let seg = |tag: &str| {
            message["segments"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s[0] == tag)
                .unwrap()[1]
                .clone()
        };
        assert_eq!(seg("BGM")[1], "PO-4711+A:B?C'D", "{name}");
        // Values longer than 35 characters continue in the next component.
        let joined = |value: &Value, from: usize| -> String {
            value.as_array().unwrap()[from..]
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect()
        };
        assert_eq!(
            joined(&seg("IMD")[2], 3),
            o.lines[0].description.clone().unwrap(),
            "{name}"
        );
        assert_eq!(
            joined(&seg("NAD")[3], 0),
            o.customer.name.clone().unwrap(),
            "{name}"
        );
        let text = message.to_string();
        assert!(text.contains("12.500"), "three decimals kept: {name}");
    }
}

#[test]
fn csv_is_read_back_by_pythons_csv_module_in_each_dialect_and_encoding() {
    let dir = tempfile::tempdir().unwrap();
    for (name, config) in goldens().into_iter().filter(|(n, _)| n.ends_with(".csv")) {
        let delimiter = config["delimiter"].as_str().unwrap_or(",").to_owned();
        let encoding = config["encoding"].as_str().unwrap_or("utf-8").to_owned();
        let header = config["header_row"].as_bool().unwrap_or(true);
        let bytes = render(config.clone());
        let crlf = config["line_ending"].as_str() != Some("lf");
        assert_eq!(bytes.ends_with(b"\r\n"), crlf, "{name}");
        let file = written(dir.path(), name, &bytes);
        let Some(rows) = python("tests/formats/read_csv.py", &[&file, &encoding, &delimiter])
        else {
            return;
        };
        let rows = rows.as_array().unwrap();
        let o = order();
        assert_eq!(rows.len(), o.lines.len() + usize::from(header), "{name}");
        let columns: Vec<String> = match config["columns"].as_array() {
            Some(c) => c.iter().map(|c| c.as_str().unwrap().to_owned()).collect(),
            None => rows[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect(),
        };
        if header {
            assert_eq!(rows[0], json!(columns), "{name}");
        }
        let decimal_comma = config["decimal_separator"] == ",";
        for (line, row) in o.lines.iter().zip(&rows[usize::from(header)..]) {
            let cell = |column: &str| {
                let i = columns.iter().position(|c| c == column)?;
                Some(row[i].as_str().unwrap().to_owned())
            };
            let number = |text: &str| {
                if decimal_comma {
                    text.replace('.', ",")
                } else {
                    text.to_owned()
                }
            };
            assert_eq!(cell("quantity"), Some(number(line.qty.as_str())), "{name}");
            assert_eq!(cell("line_no"), Some(line.line_no.to_string()), "{name}");
            if let Some(price) = cell("unit_price") {
                let expected = line
                    .unit_price
                    .as_ref()
                    .map(|p| number(p.as_str()))
                    .unwrap_or_default();
                assert_eq!(price, expected, "{name}");
            }
            if let Some(description) = cell("description") {
                let original = line.description.clone().unwrap_or_default();
                // A text cell starting like a formula is prefixed with ' and otherwise kept.
                let neutralised = if original.starts_with(['=', '+', '-', '@']) {
                    format!("'{original}")
                } else {
                    original
                };
                assert_eq!(description, neutralised, "{name}");
            }
            if let Some(theirs) = cell("customer_sku") {
                assert!(
                    !theirs.starts_with(['=', '+', '-', '@']),
                    "{name}: {theirs}"
                );
            }
        }
        if columns.iter().any(|c| c == "customer_name") {
            let i = columns.iter().position(|c| c == "customer_name").unwrap();
            assert_eq!(rows[1][i], "Müller & Söhne GmbH; \"Großhandel\" 'Süd'");
        }
    }
}
