//! CSV: one row per order line, in the columns, separators and encoding an ERP's import job
//! was set up for. Quoting per RFC 4180; text cells that a spreadsheet would read as a formula
//! (starting with `=`, `+`, `-` or `@`) are written with a leading `'`; numbers never are.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ExportFacts, RenderError, Renderer, sorted_lines};
use crate::domain::FieldError;
use crate::domain::order::{ApprovedOrder, DecimalText, OrderLine};

/// A CSV layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// Decimal commas need another delimiter than the (default) comma.
#[schemars(extend("not" = {
    "required": ["decimal_separator"],
    "properties": { "decimal_separator": { "const": "," }, "delimiter": { "const": "," } }
}))]
pub struct CsvOptions {
    /// Field separator.
    #[serde(default)]
    #[schemars(title = "Delimiter")]
    pub delimiter: Delimiter,
    /// Decimal separator of quantities and prices (German ERPs often want `,`).
    #[serde(default)]
    #[schemars(title = "Decimal separator")]
    pub decimal_separator: DecimalSeparator,
    /// Character encoding; a character Windows-1252 cannot hold fails the export
    /// (`RENDER_FAILED`) rather than being replaced.
    #[serde(default)]
    #[schemars(title = "Encoding")]
    pub encoding: Encoding,
    /// Whether the first row names the columns.
    #[serde(default = "yes")]
    #[schemars(title = "Header row")]
    pub header_row: bool,
    /// Line ending.
    #[serde(default)]
    #[schemars(title = "Line ending")]
    pub line_ending: LineEnding,
    /// The columns, in order (1-40).
    #[serde(default = "default_columns")]
    #[schemars(title = "Columns", length(min = 1, max = 40))]
    pub columns: Vec<Column>,
}

fn yes() -> bool {
    true
}

fn default_columns() -> Vec<Column> {
    use Column::*;
    vec![
        OrderNumber,
        CustomerNumber,
        OrderDate,
        LineNo,
        Sku,
        CustomerSku,
        Description,
        Quantity,
        Unit,
        UnitPrice,
        LineCurrency,
    ]
}

/// Field separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum Delimiter {
    /// `,`
    #[default]
    #[serde(rename = ",")]
    Comma,
    /// `;`
    #[serde(rename = ";")]
    Semicolon,
    /// A tab.
    #[serde(rename = "\t")]
    Tab,
}

/// Decimal separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum DecimalSeparator {
    /// `1234.5`
    #[default]
    #[serde(rename = ".")]
    Point,
    /// `1234,5`
    #[serde(rename = ",")]
    Comma,
}

/// Character encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum Encoding {
    /// UTF-8, no byte order mark.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// Windows-1252 (Western European).
    #[serde(rename = "windows-1252")]
    Windows1252,
}

/// Line ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum LineEnding {
    /// `\r\n`, as RFC 4180 says.
    #[default]
    Crlf,
    /// `\n`.
    Lf,
}

/// A column: a field of the order's header (the same on every row) or of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    /// The customer's PO number.
    OrderNumber,
    /// Order date (`YYYY-MM-DD`).
    OrderDate,
    /// Requested delivery date (`YYYY-MM-DD`).
    RequestedDeliveryDate,
    /// The order's currency.
    Currency,
    /// The customer's number in the ERP.
    CustomerNumber,
    /// The customer's name.
    CustomerName,
    /// The order's notes.
    Notes,
    /// OrderFlow's draft order id.
    DraftId,
    /// When the order was approved (UTC, RFC 3339).
    ApprovedAt,
    /// Who approved it.
    ApprovedBy,
    /// Line number.
    LineNo,
    /// Our SKU.
    Sku,
    /// The SKU as the customer wrote it.
    CustomerSku,
    /// Line description.
    Description,
    /// Quantity.
    Quantity,
    /// Unit of measure.
    Unit,
    /// Unit price.
    UnitPrice,
    /// The line's currency (the order's when the line has none).
    LineCurrency,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::OrderNumber => "order_number",
            Column::OrderDate => "order_date",
            Column::RequestedDeliveryDate => "requested_delivery_date",
            Column::Currency => "currency",
            Column::CustomerNumber => "customer_number",
            Column::CustomerName => "customer_name",
            Column::Notes => "notes",
            Column::DraftId => "draft_id",
            Column::ApprovedAt => "approved_at",
            Column::ApprovedBy => "approved_by",
            Column::LineNo => "line_no",
            Column::Sku => "sku",
            Column::CustomerSku => "customer_sku",
            Column::Description => "description",
            Column::Quantity => "quantity",
            Column::Unit => "unit",
            Column::UnitPrice => "unit_price",
            Column::LineCurrency => "line_currency",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Column::LineNo | Column::Quantity | Column::UnitPrice)
    }
}

impl CsvOptions {
    pub(super) fn check(&self) -> Result<(), FieldError> {
        if self.columns.is_empty() || self.columns.len() > 40 {
            return Err(FieldError::new(
                "format.columns",
                "must list 1 to 40 columns",
            ));
        }
        if self.delimiter == Delimiter::Comma && self.decimal_separator == DecimalSeparator::Comma {
            return Err(FieldError::new(
                "format.decimal_separator",
                "cannot be the delimiter too; use \";\" or a tab as delimiter with decimal commas",
            ));
        }
        Ok(())
    }

    fn number(&self, n: &DecimalText) -> String {
        let plain = n.to_plain();
        match self.decimal_separator {
            DecimalSeparator::Point => plain,
            DecimalSeparator::Comma => plain.replace('.', ","),
        }
    }

    fn cell(&self, column: Column, order: &ApprovedOrder, line: &OrderLine) -> String {
        let text = |v: Option<&String>| v.cloned().unwrap_or_default();
        let h = &order.header;
        let value = match column {
            Column::OrderNumber => text(h.external_order_number.as_ref()),
            Column::OrderDate => h.order_date.map(|d| d.to_string()).unwrap_or_default(),
            Column::RequestedDeliveryDate => h
                .requested_delivery_date
                .map(|d| d.to_string())
                .unwrap_or_default(),
            Column::Currency => text(h.currency.as_ref()),
            Column::CustomerNumber => text(order.customer.erp_customer_number.as_ref()),
            Column::CustomerName => text(order.customer.name.as_ref()),
            Column::Notes => text(h.notes.as_ref()),
            Column::DraftId => order.draft_order_id.to_string(),
            Column::ApprovedAt => order
                .approved_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            Column::ApprovedBy => text(order.approved_by.as_ref()),
            Column::LineNo => line.line_no.to_string(),
            Column::Sku => line.internal_sku.clone(),
            Column::CustomerSku => text(line.customer_sku_raw.as_ref()),
            Column::Description => text(line.description.as_ref()),
            Column::Quantity => self.number(&line.qty),
            Column::Unit => line.uom.clone(),
            Column::UnitPrice => line
                .unit_price
                .as_ref()
                .map(|p| self.number(p))
                .unwrap_or_default(),
            Column::LineCurrency => text(line.currency.as_ref().or(h.currency.as_ref())),
        };
        if !column.is_numeric() && value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{value}")
        } else {
            value
        }
    }

    fn write(&self, order: &ApprovedOrder) -> Result<Vec<u8>, RenderError> {
        let delimiter = match self.delimiter {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
        };
        let terminator = match self.line_ending {
            LineEnding::Crlf => csv::Terminator::CRLF,
            LineEnding::Lf => csv::Terminator::Any(b'\n'),
        };
        let mut writer = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .terminator(terminator)
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(Vec::new());
        let fail =
            |e: csv::Error| RenderError::Unwritable(format!("CSV could not be written: {e}"));
        if self.header_row {
            writer
                .write_record(self.columns.iter().map(|c| c.name()))
                .map_err(fail)?;
        }
        for line in sorted_lines(order) {
            let row: Vec<String> = self
                .columns
                .iter()
                .map(|c| self.cell(*c, order, line))
                .collect();
            writer.write_record(&row).map_err(fail)?;
        }
        let utf8 = writer
            .into_inner()
            .map_err(|e| RenderError::Unwritable(format!("CSV could not be written: {e}")))?;
        match self.encoding {
            Encoding::Utf8 => Ok(utf8),
            Encoding::Windows1252 => to_windows_1252(&utf8),
        }
    }
}

impl Renderer for CsvOptions {
    fn extension(&self) -> &'static str {
        "csv"
    }

    fn content_type(&self) -> &'static str {
        match self.encoding {
            Encoding::Utf8 => "text/csv; charset=utf-8",
            Encoding::Windows1252 => "text/csv; charset=windows-1252",
        }
    }

    fn render(&self, order: &ApprovedOrder, _facts: &ExportFacts) -> Result<Vec<u8>, RenderError> {
        self.write(order)
    }
}

/// Windows-1252 bytes, or the first character it has no code for.
fn to_windows_1252(utf8: &[u8]) -> Result<Vec<u8>, RenderError> {
    let text = String::from_utf8_lossy(utf8);
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&text);
    if !unmappable {
        return Ok(bytes.into_owned());
    }
    let culprit = text
        .chars()
        .find(|c| {
            let mut buf = [0u8; 4];
            encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut buf)).2
        })
        .unwrap_or('\u{FFFD}');
    Err(RenderError::Unwritable(format!(
        "{culprit:?} (U+{:04X}) cannot be written in Windows-1252",
        culprit as u32
    )))
}
