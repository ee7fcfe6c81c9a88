//! The sample order: what the console previews while a connector form is being edited, and
//! what the golden files are rendered from. It is deliberately awkward: umlauts and every
//! character CSV, XML and EDIFACT treat specially (`;` `"` `'` `+` `:` `?` `&` `<`), a
//! 3-decimal quantity and a line without a price.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::domain::order::{ApprovedOrder, Customer, DecimalText, OrderHeader, OrderLine};
use crate::domain::org::Slug;

fn decimal(text: &'static str) -> DecimalText {
    DecimalText::parse(text).expect("the sample's numbers are literals in the JSON grammar")
}

/// The sample order of an org.
pub fn order(org_slug: &Slug) -> ApprovedOrder {
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
    ApprovedOrder {
        draft_order_id: Uuid::from_u128(0x5a3f_1e00_0000_4000_8000_0000_0000_0001),
        org_slug: org_slug.clone(),
        approved_at: DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        approved_by: Some("jane.doe@example.com".into()),
        customer: Customer {
            id: Some(Uuid::from_u128(0xc0ff_ee00_0000_4000_8000_0000_0000_0002)),
            erp_customer_number: Some("C-1001".into()),
            name: Some("Müller & Söhne GmbH; \"Großhandel\" 'Süd'".into()),
        },
        header: OrderHeader {
            external_order_number: Some("PO-4711+A:B?C'D".into()),
            order_date: date(2027, 1, 14),
            currency: Some("EUR".into()),
            requested_delivery_date: date(2027, 1, 20),
            notes: Some("Rampe 3 <hinten>; bitte \"vorsichtig\" + trocken: ja? 'ok'".into()),
        },
        lines: vec![
            OrderLine {
                line_no: 1,
                internal_sku: "SKU-ÄÖÜ-1".into(),
                qty: decimal("12.500"),
                uom: "KG".into(),
                unit_price: Some(decimal("3.99")),
                currency: None,
                customer_sku_raw: Some("=HYPERLINK(\"x\")".into()),
                description: Some("Weizenmehl Type 405; \"fein\" 25 kg + Zusatz: ?".into()),
            },
            OrderLine {
                line_no: 2,
                internal_sku: "SKU-2".into(),
                qty: decimal("3"),
                uom: "EA".into(),
                unit_price: None,
                currency: None,
                customer_sku_raw: None,
                description: Some("Ölflasche 'Spezial' ohne Preis".into()),
            },
            OrderLine {
                line_no: 3,
                internal_sku: "SKU-3".into(),
                qty: decimal("0.125"),
                uom: "L".into(),
                unit_price: Some(decimal("0.5")),
                currency: Some("EUR".into()),
                customer_sku_raw: Some("+49-ABC".into()),
                description: Some("-Rabatt-Artikel @Aktion".into()),
            },
        ],
        source_document: None,
    }
}
