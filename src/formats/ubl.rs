//! A UBL 2.1 `Order` following Peppol BIS Order 3: customization and profile ids, buyer and
//! seller parties, the requested delivery period, and one order line per line with its
//! quantity (a UN/ECE Rec 20 `unitCode`), price and item identifiers. Element order is
//! normative in UBL, so the writer is explicit and follows `UBL-Order-2.1.xsd` and the common
//! components' sequences; the tests validate the output against the official schema.

use std::collections::BTreeMap;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ExportFacts, RenderError, Renderer, check_id, sorted_lines, units};
use crate::domain::FieldError;
use crate::domain::order::{ApprovedOrder, OrderLine};

/// Peppol BIS Order 3's customization id.
pub const CUSTOMIZATION_ID: &str = "urn:fdc:peppol.eu:poacc:trns:order:3";
/// Peppol BIS Order 3's profile id.
pub const PROFILE_ID: &str = "urn:fdc:peppol.eu:poacc:bis:ordering:3";

/// Who sends and receives the order, and how our units are coded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UblOptions {
    /// The buyer's electronic address (e.g. a GLN).
    #[serde(default)]
    #[schemars(
        title = "Buyer endpoint id",
        length(min = 1, max = 128),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub buyer_endpoint_id: Option<String>,
    /// Its scheme (an ISO 6523 ICD such as `0088` for GLN).
    #[serde(default)]
    #[schemars(
        title = "Buyer endpoint scheme",
        length(min = 1, max = 16),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub buyer_endpoint_scheme: Option<String>,
    /// The seller's electronic address.
    #[serde(default)]
    #[schemars(
        title = "Seller endpoint id",
        length(min = 1, max = 128),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub seller_endpoint_id: Option<String>,
    /// Its scheme.
    #[serde(default)]
    #[schemars(
        title = "Seller endpoint scheme",
        length(min = 1, max = 16),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub seller_endpoint_scheme: Option<String>,
    /// The seller's name (default: the org's slug).
    #[serde(default)]
    #[schemars(
        title = "Seller name",
        length(min = 1, max = 256),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub seller_name: Option<String>,
    /// Our units mapped to UN/ECE Recommendation 20 codes (`{"PCE": "H87"}`); unmapped units
    /// use a built-in table (`PCE`→`C62`, `KG`→`KGM`, …), else are written as they are.
    #[serde(default)]
    #[schemars(title = "Unit codes", schema_with = "units::schema")]
    pub unit_codes: BTreeMap<String, String>,
}

impl UblOptions {
    pub(super) fn check(&self) -> Result<(), FieldError> {
        for (field, value, max) in [
            ("format.buyer_endpoint_id", &self.buyer_endpoint_id, 128),
            (
                "format.buyer_endpoint_scheme",
                &self.buyer_endpoint_scheme,
                16,
            ),
            ("format.seller_endpoint_id", &self.seller_endpoint_id, 128),
            (
                "format.seller_endpoint_scheme",
                &self.seller_endpoint_scheme,
                16,
            ),
            ("format.seller_name", &self.seller_name, 256),
        ] {
            if let Some(v) = value {
                check_id(field, v, max)?;
            }
        }
        units::check(&self.unit_codes)
    }

    fn unit_code(&self, uom: &str) -> String {
        units::rec20(&self.unit_codes, uom)
    }

    fn write(&self, order: &ApprovedOrder) -> Result<Vec<u8>, RenderError> {
        let mut xml = Xml::new();
        xml.decl();
        xml.open_with(
            "Order",
            &[
                (
                    "xmlns",
                    "urn:oasis:names:specification:ubl:schema:xsd:Order-2",
                ),
                (
                    "xmlns:cac",
                    "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
                ),
                (
                    "xmlns:cbc",
                    "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
                ),
            ],
        );
        let h = &order.header;
        xml.leaf("cbc:CustomizationID", CUSTOMIZATION_ID);
        xml.leaf("cbc:ProfileID", PROFILE_ID);
        let id = h
            .external_order_number
            .clone()
            .unwrap_or_else(|| order.draft_order_id.to_string());
        xml.leaf("cbc:ID", &id);
        let issued = h
            .order_date
            .unwrap_or_else(|| order.approved_at.date_naive());
        xml.leaf("cbc:IssueDate", &issued.to_string());
        if let Some(notes) = &h.notes {
            xml.leaf("cbc:Note", notes);
        }
        if let Some(currency) = &h.currency {
            xml.leaf("cbc:DocumentCurrencyCode", currency);
        }
        xml.leaf("cbc:CustomerReference", &order.draft_order_id.to_string());
        self.buyer(&mut xml, order);
        self.seller(&mut xml, order);
        if let Some(date) = h.requested_delivery_date {
            xml.open("cac:Delivery");
            xml.open("cac:RequestedDeliveryPeriod");
            xml.leaf("cbc:StartDate", &date.to_string());
            xml.leaf("cbc:EndDate", &date.to_string());
            xml.close("cac:RequestedDeliveryPeriod");
            xml.close("cac:Delivery");
        }
        for line in sorted_lines(order) {
            self.order_line(&mut xml, line, h.currency.as_ref())?;
        }
        xml.close("Order");
        Ok(xml.finish())
    }

    /// One `cac:OrderLine`; a priced line needs a currency, its own or the order's.
    fn order_line(
        &self,
        xml: &mut Xml,
        line: &OrderLine,
        order_currency: Option<&String>,
    ) -> Result<(), RenderError> {
        xml.open("cac:OrderLine");
        xml.open("cac:LineItem");
        xml.leaf("cbc:ID", &line.line_no.to_string());
        xml.leaf_with(
            "cbc:Quantity",
            &[("unitCode", &self.unit_code(&line.uom))],
            &line.qty.to_plain(),
        );
        if let Some(price) = &line.unit_price {
            let currency = line.currency.as_ref().or(order_currency).ok_or_else(|| {
                RenderError::Unwritable(format!(
                    "line {}: a price needs a currency (the line's or the order's)",
                    line.line_no
                ))
            })?;
            xml.open("cac:Price");
            xml.leaf_with(
                "cbc:PriceAmount",
                &[("currencyID", currency)],
                &price.to_plain(),
            );
            xml.close("cac:Price");
        }
        xml.open("cac:Item");
        if let Some(description) = &line.description {
            xml.leaf("cbc:Description", description);
        }
        xml.leaf(
            "cbc:Name",
            line.description.as_deref().unwrap_or(&line.internal_sku),
        );
        if let Some(theirs) = &line.customer_sku_raw {
            xml.open("cac:BuyersItemIdentification");
            xml.leaf("cbc:ID", theirs);
            xml.close("cac:BuyersItemIdentification");
        }
        xml.open("cac:SellersItemIdentification");
        xml.leaf("cbc:ID", &line.internal_sku);
        xml.close("cac:SellersItemIdentification");
        xml.close("cac:Item");
        xml.close("cac:LineItem");
        xml.close("cac:OrderLine");
        Ok(())
    }

    fn buyer(&self, xml: &mut Xml, order: &ApprovedOrder) {
        xml.open("cac:BuyerCustomerParty");
        xml.open("cac:Party");
        endpoint(
            xml,
            self.buyer_endpoint_id.as_deref(),
            self.buyer_endpoint_scheme.as_deref(),
        );
        if let Some(number) = &order.customer.erp_customer_number {
            xml.open("cac:PartyIdentification");
            xml.leaf("cbc:ID", number);
            xml.close("cac:PartyIdentification");
        }
        if let Some(name) = &order.customer.name {
            xml.open("cac:PartyName");
            xml.leaf("cbc:Name", name);
            xml.close("cac:PartyName");
        }
        xml.close("cac:Party");
        xml.close("cac:BuyerCustomerParty");
    }

    fn seller(&self, xml: &mut Xml, order: &ApprovedOrder) {
        xml.open("cac:SellerSupplierParty");
        xml.open("cac:Party");
        endpoint(
            xml,
            self.seller_endpoint_id.as_deref(),
            self.seller_endpoint_scheme.as_deref(),
        );
        xml.open("cac:PartyName");
        xml.leaf(
            "cbc:Name",
            self.seller_name
                .as_deref()
                .unwrap_or(order.org_slug.as_str()),
        );
        xml.close("cac:PartyName");
        xml.close("cac:Party");
        xml.close("cac:SellerSupplierParty");
    }
}

impl Renderer for UblOptions {
    fn extension(&self) -> &'static str {
        "xml"
    }

    fn content_type(&self) -> &'static str {
        "application/xml"
    }

    fn render(&self, order: &ApprovedOrder, _facts: &ExportFacts) -> Result<Vec<u8>, RenderError> {
        self.write(order)
    }
}

fn endpoint(xml: &mut Xml, id: Option<&str>, scheme: Option<&str>) {
    if let Some(id) = id {
        match scheme {
            Some(scheme) => xml.leaf_with("cbc:EndpointID", &[("schemeID", scheme)], id),
            None => xml.leaf("cbc:EndpointID", id),
        }
    }
}

/// A small indenting XML writer over `quick-xml` (which escapes text and attributes).
struct Xml(Writer<Vec<u8>>);

impl Xml {
    fn new() -> Self {
        Self(Writer::new_with_indent(Vec::new(), b' ', 2))
    }

    // Writing into a Vec cannot fail; the results are ignored for that reason only.
    fn event(&mut self, event: Event<'_>) {
        let _ = self.0.write_event(event);
    }

    fn decl(&mut self) {
        self.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    }

    fn open(&mut self, name: &str) {
        self.event(Event::Start(BytesStart::new(name)));
    }

    fn open_with(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let mut start = BytesStart::new(name);
        for a in attributes {
            start.push_attribute(*a);
        }
        self.event(Event::Start(start));
    }

    fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.leaf_with(name, &[], text);
    }

    fn leaf_with(&mut self, name: &str, attributes: &[(&str, &str)], text: &str) {
        self.open_with(name, attributes);
        self.event(Event::Text(BytesText::new(text)));
        self.close(name);
    }

    fn finish(self) -> Vec<u8> {
        let mut bytes = self.0.into_inner();
        bytes.push(b'\n');
        bytes
    }
}
