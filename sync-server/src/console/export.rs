//! The ledgers as files: `.xlsx` (rust_xlsxwriter) and CSV (the `csv` crate), from one
//! table of typed cells that the HTML pages show too, so a page and its export never
//! disagree.
//!
//! Every value came from a phone, that is from whoever holds one: nothing in a cell may
//! act. In `.xlsx` every text is a string cell (never a formula, never a hyperlink); in CSV,
//! which has no types, a text that a spreadsheet would take for a formula (`=`, `+`, `-`,
//! `@`, tab, CR) is prefixed with `'` ([`neutralise`]). Free text is also passed through
//! [`mask_numbers`]: the projection holds phone and ID numbers masked only, and a number
//! typed into a record's description is masked the same way before it is shown or exported.

use std::borrow::Cow;

use rust_xlsxwriter::{ExcelDateTime, Format, FormatAlign, Workbook, Worksheet, XlsxError};

use super::format_ms;

/// China Standard Time, the stations' zone: dates in the files are local dates.
const CST_OFFSET_S: i64 = 8 * 3600;
/// Excel's longest cell text, in UTF-16 units.
const EXCEL_MAX_TEXT: usize = 32_767;
/// Column widths (in characters of the default font), lower and upper bounds.
const MIN_WIDTH: f64 = 6.0;
const MAX_WIDTH: f64 = 60.0;

/// A typed cell of a ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// ms since the epoch; shown as a date and time in China Standard Time.
    Time(Option<i64>),
    Int(Option<i64>),
    /// A number shown with one decimal.
    Num(Option<f64>),
    /// A share (0–1) shown as a percentage.
    Rate(Option<f64>),
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// The cell as people read it (the page, CSV): times `YYYY-MM-DD HH:MM:SS` in China
    /// time, an absent value empty.
    pub fn display(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Time(t) => t.map(format_ms).unwrap_or_default(),
            Cell::Int(n) => n.map(|n| n.to_string()).unwrap_or_default(),
            Cell::Num(x) => x.map(|x| format!("{x:.1}")).unwrap_or_default(),
            Cell::Rate(r) => r.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_default(),
        }
    }
}

/// A ledger as a table: headers and one row per record or task.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// The 合计 of a ledger: the export's second sheet and the page's summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Who exported what, when (the sheet's first lines).
    pub about: Vec<(&'static str, Cell)>,
    /// The key figures.
    pub figures: Vec<(&'static str, Cell)>,
    /// Counts by a column's values: a title and its lines.
    pub sections: Vec<(&'static str, Vec<(String, usize)>)>,
}

/// Names of a workbook's two sheets.
pub struct SheetNames {
    pub ledger: &'static str,
    pub totals: &'static str,
    /// The 合计 sheet's first line.
    pub totals_title: String,
}

/// The characters a spreadsheet reads as the start of a formula (or of a DDE call).
fn formula_like(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A CSV value that no spreadsheet will evaluate: one starting like a formula gets a
/// leading `'`, which Excel and LibreOffice show as text.
pub fn neutralise(s: &str) -> Cow<'_, str> {
    if formula_like(s) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Masks what looks like a phone number or an ID number in free text: a run of 11 or more
/// ASCII digits (an ID's final `X` included) keeps its first 3 and last 4 characters, as
/// the projection masks those fields (`13812345678` → `138****5678`).
pub fn mask_numbers(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 17 && i < b.len() && matches!(b[i], b'X' | b'x') {
                i += 1;
            }
            if i - start >= 11 {
                runs.push((start, i));
            }
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end) in runs {
        // Digits and X are ASCII: these are character boundaries.
        out.push_str(&s[at..start]);
        out.push_str(&xiuhua_core::validate::mask_id(&s[start..end]));
        at = end;
    }
    out.push_str(&s[at..]);
    Cow::Owned(out)
}

/// The ledger as CSV: UTF-8 with a byte-order mark (Excel on a station PC reads Chinese
/// correctly only with it), a header line, every value as text and neutralised.
pub fn csv(table: &Table) -> Result<Vec<u8>, csv::Error> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        w.write_record(table.headers.iter().map(|h| neutralise(h).into_owned()))?;
        for row in &table.rows {
            w.write_record(row.iter().map(|c| neutralise(&c.display()).into_owned()))?;
        }
        w.flush()?;
    }
    Ok(out)
}

/// Cuts a text to what one Excel cell holds.
fn excel_text(s: &str) -> Cow<'_, str> {
    if s.len() <= EXCEL_MAX_TEXT {
        // Each UTF-16 unit takes at least one UTF-8 byte.
        return Cow::Borrowed(s);
    }
    let mut units = 0;
    let mut end = 0;
    for (i, ch) in s.char_indices() {
        units += ch.len_utf16();
        if units > EXCEL_MAX_TEXT {
            break;
        }
        end = i + ch.len_utf8();
    }
    Cow::Borrowed(&s[..end])
}

/// The width a text takes in a column: CJK and other wide characters count twice.
fn text_width(s: &str) -> f64 {
    s.chars()
        .map(|c| if (c as u32) < 0x1100 { 1.0 } else { 2.0 })
        .sum()
}

/// The date-time serial Excel keeps for a time in ms, in China Standard Time; `None` out
/// of Excel's range (1900–9999), such a time is written as text instead.
fn excel_time(ms: i64) -> Option<ExcelDateTime> {
    ExcelDateTime::from_timestamp(ms.div_euclid(1000).checked_add(CST_OFFSET_S)?).ok()
}

struct Formats {
    header: Format,
    time: Format,
    num: Format,
    rate: Format,
    bold: Format,
}

fn formats() -> Formats {
    Formats {
        header: Format::new()
            .set_bold()
            .set_background_color("#EEF0F2")
            .set_align(FormatAlign::Center),
        time: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
        num: Format::new().set_num_format("0.0"),
        rate: Format::new().set_num_format("0.0%"),
        bold: Format::new().set_bold(),
    }
}

/// Writes one typed cell: text as a string cell (never a formula), times as real dates.
fn write_cell(
    ws: &mut Worksheet,
    row: u32,
    col: u16,
    cell: &Cell,
    f: &Formats,
) -> Result<(), XlsxError> {
    match cell {
        Cell::Text(s) => {
            if !s.is_empty() {
                ws.write_string(row, col, excel_text(s))?;
            }
        }
        Cell::Time(Some(ms)) => match excel_time(*ms) {
            Some(t) => {
                ws.write_datetime_with_format(row, col, t, &f.time)?;
            }
            None => {
                ws.write_string(row, col, format_ms(*ms))?;
            }
        },
        // Ledger counts and days are far below 2^53: exact as f64.
        Cell::Int(Some(n)) => {
            ws.write_number(row, col, *n as f64)?;
        }
        Cell::Num(Some(x)) => {
            ws.write_number_with_format(row, col, *x, &f.num)?;
        }
        Cell::Rate(Some(r)) => {
            ws.write_number_with_format(row, col, *r, &f.rate)?;
        }
        Cell::Time(None) | Cell::Int(None) | Cell::Num(None) | Cell::Rate(None) => {}
    }
    Ok(())
}

/// The width a cell's column needs for it.
fn cell_width(cell: &Cell) -> f64 {
    match cell {
        Cell::Time(Some(_)) => 19.0,
        Cell::Text(s) => text_width(s),
        other => text_width(&other.display()),
    }
}

/// The ledger as an `.xlsx` workbook: the ledger sheet (headers bold and frozen, an
/// autofilter, columns sized to their contents) and the 合计 sheet.
pub fn xlsx(table: &Table, summary: &Summary, names: &SheetNames) -> Result<Vec<u8>, XlsxError> {
    let f = formats();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(names.ledger)?;
    let mut widths: Vec<f64> = table.headers.iter().map(|h| text_width(h)).collect();
    for (col, h) in (0u16..).zip(&table.headers) {
        ws.write_string_with_format(0, col, *h, &f.header)?;
    }
    for (row, cells) in (1u32..).zip(&table.rows) {
        for (col, cell) in (0u16..).zip(cells) {
            write_cell(ws, row, col, cell, &f)?;
            if let Some(w) = widths.get_mut(usize::from(col)) {
                *w = w.max(cell_width(cell));
            }
        }
    }
    for (col, w) in (0u16..).zip(&widths) {
        ws.set_column_width(col, (w + 2.0).clamp(MIN_WIDTH, MAX_WIDTH))?;
    }
    ws.set_freeze_panes(1, 0)?;
    if let Some(last_col) = u16::try_from(table.headers.len())
        .ok()
        .and_then(|n| n.checked_sub(1))
    {
        let last_row = u32::try_from(table.rows.len()).unwrap_or(u32::MAX);
        ws.autofilter(0, 0, last_row, last_col)?;
    }

    let ws = wb.add_worksheet();
    ws.set_name(names.totals)?;
    ws.write_string_with_format(0, 0, names.totals_title.as_str(), &f.bold)?;
    let mut row = 2u32;
    let mut label_width = text_width(&names.totals_title);
    let mut value_width: f64 = 10.0;
    for (label, cell) in &summary.about {
        ws.write_string_with_format(row, 0, *label, &f.bold)?;
        write_cell(ws, row, 1, cell, &f)?;
        label_width = label_width.max(text_width(label));
        value_width = value_width.max(cell_width(cell));
        row += 1;
    }
    row += 1;
    for (label, cell) in &summary.figures {
        ws.write_string(row, 0, *label)?;
        write_cell(ws, row, 1, cell, &f)?;
        label_width = label_width.max(text_width(label));
        row += 1;
    }
    for (title, lines) in &summary.sections {
        row += 1;
        ws.write_string_with_format(row, 0, *title, &f.bold)?;
        row += 1;
        for (label, n) in lines {
            ws.write_string(row, 0, excel_text(label))?;
            ws.write_number(row, 1, *n as f64)?;
            label_width = label_width.max(text_width(label));
            row += 1;
        }
    }
    ws.set_column_width(0, (label_width + 2.0).clamp(MIN_WIDTH, MAX_WIDTH))?;
    ws.set_column_width(1, (value_width + 2.0).clamp(MIN_WIDTH, MAX_WIDTH))?;
    wb.save_to_buffer()
}

/// A `Content-Disposition` for a download: an ASCII `filename` for old clients and the
/// real name in `filename*` (RFC 6266 with RFC 5987's UTF-8 encoding).
pub fn content_disposition(ascii_name: &str, name: &str) -> String {
    let fallback: String = ascii_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        rfc5987(name)
    )
}

/// Percent-encodes all but RFC 5987's `attr-char`s.
fn rfc5987(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file name part from a display name: what file systems refuse becomes `_`.
pub fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_values_are_neutralised() {
        for bad in ["=1+1", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(neutralise(bad), format!("'{bad}"), "{bad:?}");
        }
        for fine in ["楼道堆放杂物", "1+1", "a=b", "", "'quoted"] {
            assert_eq!(neutralise(fine), fine);
        }
    }

    #[test]
    fn numbers_in_free_text_are_masked() {
        assert_eq!(
            mask_numbers("请联系13812345678，身份证11010519491231002X。"),
            "请联系138****5678，身份证110***********002X。"
        );
        assert_eq!(
            mask_numbers("门牌1234567号"),
            "门牌1234567号",
            "short runs stay"
        );
        assert_eq!(mask_numbers("2026年12月1日"), "2026年12月1日");
        assert!(matches!(mask_numbers("没有数字"), Cow::Borrowed(_)));
        assert_eq!(mask_numbers("x13812345678"), "x138****5678");
    }

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_the_utf8_name() {
        let h = content_disposition("records-ledger-2026-12.xlsx", "民情台账-2026-12.xlsx");
        assert_eq!(
            h,
            "attachment; filename=\"records-ledger-2026-12.xlsx\"; \
             filename*=UTF-8''%E6%B0%91%E6%83%85%E5%8F%B0%E8%B4%A6-2026-12.xlsx"
        );
        let h = content_disposition("a\"b;c.csv", "x y\".csv");
        assert!(h.starts_with("attachment; filename=\"a_b_c.csv\"; "), "{h}");
        assert!(h.ends_with("filename*=UTF-8''x%20y%22.csv"), "{h}");
        assert_eq!(file_part("第一/网格:1"), "第一_网格_1");
    }

    #[test]
    fn csv_has_a_bom_crlf_lines_and_quoted_fields() {
        let t = Table {
            headers: vec!["编号", "摘要"],
            rows: vec![
                vec![Cell::text("r1"), Cell::text("=HYPERLINK(\"x\")")],
                vec![Cell::Int(Some(3)), Cell::text("两行\n文字, 逗号")],
                vec![Cell::Time(Some(0)), Cell::Rate(Some(0.5))],
            ],
        };
        let out = String::from_utf8(csv(&t).unwrap()).unwrap();
        assert_eq!(
            out,
            "\u{feff}编号,摘要\r\n\
             r1,\"'=HYPERLINK(\"\"x\"\")\"\r\n\
             3,\"两行\n文字, 逗号\"\r\n\
             1970-01-01 08:00:00,50.0%\r\n"
        );
    }

    #[test]
    fn long_texts_are_cut_to_an_excel_cell() {
        let long = "民".repeat(EXCEL_MAX_TEXT + 10);
        assert_eq!(excel_text(&long).chars().count(), EXCEL_MAX_TEXT);
        let emoji = "😀".repeat(EXCEL_MAX_TEXT);
        assert_eq!(
            excel_text(&emoji).encode_utf16().count(),
            EXCEL_MAX_TEXT - 1,
            "a surrogate pair is not split"
        );
        assert!(excel_time(i64::MAX).is_none());
        assert!(excel_time(-10_000_000_000_000_000).is_none());
        assert!(excel_time(0).is_some());
    }
}
