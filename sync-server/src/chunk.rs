//! Reading an Automerge change chunk before Automerge does: LEB128 numbers never past the
//! end of the bytes ([`Reader`], also the chunk header's length in `ingest::check_chunk`),
//! and the string lengths the change declares.
//!
//! Automerge's column decoder allocates a string's declared length (up to 1 GB) before it
//! reads the bytes, so a change of 2 KB can make it allocate a gigabyte per string: enough,
//! with a few pushes decoding at once, to exhaust a server's address space (found by the
//! `req_push` fuzz target). [`check_declared_strings`] follows the change's layout (header
//! fields, column metadata, column data) and refuses a string column whose runs declare a
//! string longer than what is left of the column. Anything it cannot follow is left to
//! Automerge's own decoder, which refuses it: the walk only ever refuses a declared length
//! that cannot fit.

/// Reads LEB128 numbers and byte runs from a slice, never past its end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from offset `at` (the end when `at` is past it).
    pub(crate) fn new(bytes: &'a [u8], at: usize) -> Self {
        Reader {
            bytes,
            at: at.min(bytes.len()),
        }
    }

    /// Where the next read starts.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    pub(crate) fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// An unsigned LEB128 number; `None` when the bytes end first or it exceeds 64 bits.
    pub(crate) fn uleb(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return None; // more than 64 bits
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn sleb(&mut self) -> Option<i64> {
        let mut v: i64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            if shift >= 64 {
                return None;
            }
            v |= i64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
        }
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        if n > self.left() {
            return None;
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Some(s)
    }
}

/// Automerge's column type of strings (the low three bits of a column specification).
const STRING_COLUMN: u64 = 5;

/// The columns (specification, data) of a change chunk's body (what follows the chunk
/// header), or `None` when the layout cannot be followed.
fn columns(body: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut r = Reader::new(body, 0);
    let deps = r.uleb()?;
    r.take(deps.checked_mul(32)?)?;
    let actor = r.uleb()?;
    r.take(actor)?;
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.sleb()?; // time
    let message = r.uleb()?;
    r.take(message)?;
    let others = r.uleb()?;
    for _ in 0..others {
        // Each actor takes at least its length byte: the loop ends with the bytes.
        let len = r.uleb()?;
        r.take(len)?;
    }
    let count = r.uleb()?;
    let mut meta = Vec::new();
    for _ in 0..count {
        let spec = r.uleb()?;
        let len = r.uleb()?;
        meta.push((spec, len));
    }
    let mut cols = Vec::with_capacity(meta.len());
    for (spec, len) in meta {
        cols.push((spec, r.take(len)?));
    }
    Some(cols)
}

/// Whether every string a run-length encoded string column declares fits in the column.
fn strings_fit(column: &[u8]) -> bool {
    let mut r = Reader::new(column, 0);
    while r.left() > 0 {
        let Some(run) = r.sleb() else {
            return true; // not followable: Automerge's decoder refuses it
        };
        let values = match run {
            0 => {
                // A run of nulls: its count, no values.
                if r.uleb().is_none() {
                    return true;
                }
                0
            }
            n if n > 0 => 1,
            n => n.unsigned_abs(),
        };
        for _ in 0..values {
            let Some(len) = r.uleb() else {
                return true;
            };
            if r.take(len).is_none() {
                return false;
            }
        }
    }
    true
}

/// Refuses a change chunk body whose string columns declare a string longer than the
/// column holds.
pub fn check_declared_strings(body: &[u8]) -> Result<(), String> {
    let Some(cols) = columns(body) else {
        return Ok(());
    };
    for (spec, data) in cols {
        if spec & 0b111 == STRING_COLUMN && !strings_fit(data) {
            return Err(
                "is not a valid Automerge change: a string in its columns is longer than the column"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Appends `v` as unsigned LEB128 (tests craft chunks with it).
#[cfg(test)]
pub(crate) fn write_uleb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::write_uleb as uleb;
    use super::*;

    /// A change body with no deps, a 1-byte actor, no message and the given columns.
    fn body(cols: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0, 1, 0xaa, 1, 1, 0, 0, 0];
        uleb(cols.len() as u64, &mut b);
        for (spec, data) in cols {
            uleb(*spec, &mut b);
            uleb(data.len() as u64, &mut b);
        }
        for (_, data) in cols {
            b.extend_from_slice(data);
        }
        b
    }

    #[test]
    fn unsigned_leb_refuses_more_than_64_bits_and_a_truncated_number() {
        let mut max = Vec::new();
        uleb(u64::MAX, &mut max);
        assert_eq!(Reader::new(&max, 0).uleb(), Some(u64::MAX));
        let mut over = max.clone();
        *over.last_mut().unwrap() = 0x02;
        assert_eq!(Reader::new(&over, 0).uleb(), None);
        assert_eq!(Reader::new(&[0x80], 0).uleb(), None);
        let mut r = Reader::new(&[0xff, 0x01, 0x07], 0);
        assert_eq!((r.uleb(), r.position(), r.left()), (Some(255), 2, 1));
    }

    #[test]
    fn signed_leb_reads_negative_runs() {
        assert_eq!(Reader::new(&[0x7e], 0).sleb(), Some(-2));
        assert_eq!(Reader::new(&[0x02], 0).sleb(), Some(2));
        assert_eq!(Reader::new(&[0x80, 0x7f], 0).sleb(), Some(-128));
    }

    #[test]
    fn a_string_longer_than_its_column_is_refused() {
        // A literal run of one string declaring 2^30 bytes, holding 3.
        let mut col = vec![0x7f];
        uleb(1 << 30, &mut col);
        col.extend_from_slice(b"abc");
        let e = check_declared_strings(&body(&[(0x15, col)])).unwrap_err();
        assert!(e.contains("longer than the column"), "{e}");
        // The same in a repeat run.
        let mut col = vec![0x03];
        uleb(1 << 40, &mut col);
        assert!(check_declared_strings(&body(&[(0x15, col)])).is_err());
    }

    #[test]
    fn fitting_strings_null_runs_and_other_columns_pass() {
        // Literal run of two ("ab", "c"), a null run of 5, a repeat run of "xyz" × 3.
        let col = vec![0x7e, 2, b'a', b'b', 1, b'c', 0, 5, 3, 3, b'x', b'y', b'z'];
        // An integer column (type 2) whose bytes would read as a huge length is not a
        // string column.
        let ints = vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(
            check_declared_strings(&body(&[(0x15, col), (0x02, ints)])),
            Ok(())
        );
    }
}
