//! Golden files: the sample order in each format, byte for byte. `UPDATE_GOLDEN=1 cargo test
//! --test formats` writes them again after an intended change; review the diff.

use std::path::PathBuf;

use orderflow::formats::RenderError;
use serde_json::json;

use crate::{facts, format, goldens, order, render};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(name)
}

#[test]
fn each_format_renders_the_sample_order_as_its_golden_file() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, config) in goldens() {
        let bytes = render(config.clone());
        let path = golden_path(name);
        if update {
            std::fs::write(&path, &bytes).unwrap();
            continue;
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            bytes == expected,
            "{name} differs from its golden file:\n{}\n---\n{}",
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&expected)
        );
        // Deterministic: the same export renders to the same bytes again.
        assert_eq!(render(config), bytes, "{name}");
    }
}

#[test]
fn json_v1_is_the_default_and_unchanged() {
    let default = orderflow::formats::FormatConfig::default();
    let bytes = default.renderer().render(&order(), &facts()).unwrap();
    assert_eq!(
        bytes,
        orderflow::formats::json_v1::render(&order()).unwrap()
    );
    assert_eq!(bytes, render(json!({"type": "json_v1"})));
}

#[test]
fn windows_1252_refuses_what_it_cannot_hold_instead_of_a_question_mark() {
    let csv = format(json!({"type": "csv", "delimiter": ";", "encoding": "windows-1252"}));
    // € and umlauts are in Windows-1252.
    let mut fine = order();
    fine.lines[0].description = Some("Preis in € für Öl".into());
    let bytes = csv.renderer().render(&fine, &facts()).unwrap();
    assert!(
        bytes.windows(1).any(|b| b == [0x80]),
        "€ is 0x80 in Windows-1252"
    );
    let mut order = order();
    order.lines[1].description = Some("Ωmega 😀".into());
    match csv.renderer().render(&order, &facts()) {
        Err(RenderError::Unwritable(why)) => {
            assert!(why.contains("U+03A9"), "{why}");
            let err = orderflow::connectors::ConnectorError::from(RenderError::Unwritable(why));
            assert_eq!(err.code.as_str(), "RENDER_FAILED");
            assert!(!err.is_transient());
        }
        other => panic!("{other:?}"),
    }
    // EDIFACT's UNOC (ISO 8859-1) likewise; UNOW (UTF-8) carries it.
    let unoc =
        format(json!({"type": "edifact_orders_d96a", "sender_id": "A", "recipient_id": "B"}));
    assert!(matches!(
        unoc.renderer().render(&order, &facts()),
        Err(RenderError::Unwritable(_))
    ));
    let unow = format(
        json!({"type": "edifact_orders_d96a", "sender_id": "A", "recipient_id": "B",
                             "syntax_identifier": "UNOW"}),
    );
    let text = String::from_utf8(unow.renderer().render(&order, &facts()).unwrap()).unwrap();
    assert!(text.contains("Ωmega 😀"));
}

#[test]
fn bad_format_options_name_the_field_at_fault() {
    for (value, field) in [
        (json!({"type": "xlsx"}), "format"),
        (json!({"type": "csv", "delimiter": "|"}), "format.delimiter"),
        (
            json!({"type": "csv", "decimal_separator": ","}),
            "format.decimal_separator",
        ),
        (json!({"type": "csv", "columns": []}), "format.columns"),
        (
            json!({"type": "csv", "columns": ["sku", "price"]}),
            "format.columns[1]",
        ),
        (json!({"type": "csv", "quote": "always"}), "format"),
        (
            json!({"type": "edifact_orders_d96a", "recipient_id": "B"}),
            "format",
        ),
        (
            json!({"type": "edifact_orders_d96a", "sender_id": "A\u{0}", "recipient_id": "B"}),
            "format.sender_id",
        ),
        (
            json!({"type": "edifact_orders_d96a", "sender_id": "A", "recipient_id": "Łódź"}),
            "format.recipient_id",
        ),
        (
            json!({"type": "ubl_order_2_1", "unit_codes": {"KG": "kilogram"}}),
            "format.unit_codes",
        ),
        (json!("csv"), "format"),
    ] {
        let err = orderflow::formats::FormatConfig::parse(Some(&value)).unwrap_err();
        assert!(
            err.field == field || err.field.starts_with(&format!("{field}.")),
            "{value}: {} ({})",
            err.field,
            err.message
        );
    }
}

#[test]
fn every_format_has_the_extension_and_media_type_users_expect() {
    for (value, ext, media) in [
        (json!({"type": "json_v1"}), "json", "application/json"),
        (json!({"type": "csv"}), "csv", "text/csv; charset=utf-8"),
        (
            json!({"type": "csv", "delimiter": ";", "encoding": "windows-1252"}),
            "csv",
            "text/csv; charset=windows-1252",
        ),
        (json!({"type": "ubl_order_2_1"}), "xml", "application/xml"),
        (
            json!({"type": "edifact_orders_d96a", "sender_id": "A", "recipient_id": "B"}),
            "edi",
            "application/edifact",
        ),
    ] {
        let f = format(value.clone());
        assert_eq!(f.renderer().extension(), ext, "{value}");
        assert_eq!(f.renderer().content_type(), media, "{value}");
        // What the export file endpoint tells from the bytes agrees.
        let bytes = f.renderer().render(&order(), &facts());
        if let Ok(bytes) = bytes {
            assert_eq!(orderflow::formats::media_type_of(&bytes), media, "{value}");
        }
    }
}

#[test]
fn edifact_splits_long_names_and_descriptions_and_refuses_what_does_not_fit() {
    let edifact = json!({"type": "edifact_orders_d96a", "sender_id": "A", "recipient_id": "B",
                         "unit_codes": {"KG": "KGM", "EA": "H87"}});
    let segments = |order: &orderflow::domain::order::ApprovedOrder| {
        let bytes = format(edifact.clone()).renderer().render(order, &facts());
        bytes.map(|b| {
            // UNOC is ISO 8859-1: each byte is the code point.
            b.iter()
                .map(|&c| char::from(c))
                .collect::<String>()
                .split('\'')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let mut long = order();
    long.customer.name = Some("N".repeat(100));
    long.lines[0].description = Some("d".repeat(80));
    long.lines[2].uom = "PCE".into();
    let segs = segments(&long).unwrap();
    let nad = segs.iter().find(|s| s.starts_with("NAD+BY")).unwrap();
    assert_eq!(
        nad,
        &format!(
            "NAD+BY+C-1001::91++{}:{}:{}",
            "N".repeat(35),
            "N".repeat(35),
            "N".repeat(30)
        )
    );
    // 80 characters: 35 + 35 in one IMD, the last 10 in a second.
    let imds: Vec<&String> = segs.iter().filter(|s| s.starts_with("IMD")).collect();
    assert_eq!(
        imds[0],
        &format!("IMD+F++:::{}:{}", "d".repeat(35), "d".repeat(35))
    );
    assert_eq!(imds[1], &format!("IMD+F++:::{}", "d".repeat(10)));
    // Units become Rec 20 codes: the connection's map, then the built-in table.
    assert!(segs.contains(&"QTY+21:12.500:KGM".to_owned()), "{segs:?}");
    assert!(segs.contains(&"QTY+21:3:H87".to_owned()), "{segs:?}");
    assert!(segs.contains(&"QTY+21:0.125:C62".to_owned()), "{segs:?}");

    type Change = fn(&mut orderflow::domain::order::ApprovedOrder);
    let refused: [(&str, Change); 6] = [
        ("customer name", |o| o.customer.name = Some("N".repeat(176))),
        ("order number", |o| {
            o.header.external_order_number = Some("P".repeat(36))
        }),
        ("SKU", |o| o.lines[0].internal_sku = "S".repeat(36)),
        ("customer SKU", |o| {
            o.lines[0].customer_sku_raw = Some("C".repeat(36))
        }),
        ("quantity", |o| {
            o.lines[0].qty =
                orderflow::domain::order::DecimalText::parse("1234567890123.456").unwrap()
        }),
        ("unit", |o| o.lines[0].uom = "BUNDLE".into()),
    ];
    for (what, change) in refused {
        let mut o = order();
        change(&mut o);
        match segments(&o) {
            Err(RenderError::Unwritable(why)) => assert!(
                why.contains("EDIFACT") || why.contains("unit_codes"),
                "{what}: {why}"
            ),
            other => panic!("{what}: {other:?}"),
        }
    }
}
