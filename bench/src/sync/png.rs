//! A small line chart drawn into an RGB buffer and written as a PNG (zlib by `flate2`, CRC
//! computed here). Axes, tick marks with numbers in a 3×5 pixel font, one coloured line per
//! series with a square at each point, and a legend of coloured bars.

use std::io::Write;

use crate::error::{Context, Result};

const COLOURS: [[u8; 3]; 3] = [[31, 119, 180], [214, 39, 40], [44, 160, 44]];

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let i = (y as usize * self.w + x as usize) * 3;
        self.px[i..i + 3].copy_from_slice(&c);
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham, stamped with a square).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let r = thick / 2;
        loop {
            self.rect(x - r, y - r, x + r, y + r, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text of digits, '.', 'K', 's' in a 3×5 font scaled by `s`.
    fn text(&mut self, x: i64, y: i64, t: &str, s: i64, c: [u8; 3]) {
        for (i, ch) in t.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        let px = x + (i as i64 * 4 + col) * s;
                        let py = y + row as i64 * s;
                        self.rect(px, py, px + s - 1, py + s - 1, c);
                    }
                }
            }
        }
    }
}

fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        'K' => [5, 5, 6, 5, 5],
        's' => [0, 3, 6, 1, 6],
        _ => [0; 5],
    }
}

/// A step of 1, 2 or 5 × 10^n giving about 5 ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else if (v * 10.0) == (v * 10.0).round() {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws the series (x, y) on linear axes from 0; returns PNG bytes.
pub fn line_chart(series: &[Vec<(f64, f64)>], w: usize, h: usize) -> Result<Vec<u8>> {
    let mut c = Canvas::new(w, h);
    let (left, right, top, bottom) = (70i64, w as i64 - 30, 40i64, h as i64 - 50);
    let xmax = series.iter().flatten().map(|p| p.0).fold(1.0f64, f64::max);
    let ymax0 = series.iter().flatten().map(|p| p.1).fold(0.0f64, f64::max);
    let ystep = nice_step(ymax0.max(1e-3) * 1.05);
    let ymax = (ymax0.max(1e-3) * 1.05 / ystep).ceil() * ystep;
    let xs = |x: f64| left + ((x / xmax) * (right - left) as f64).round() as i64;
    let ys = |y: f64| bottom - ((y / ymax) * (bottom - top) as f64).round() as i64;
    let grey = [200, 200, 200];
    let black = [0, 0, 0];
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= ymax + ystep / 2.0 {
        let py = ys(y);
        c.line((left, py), (right, py), grey, 1);
        c.line((left - 5, py), (left, py), black, 1);
        c.text(
            left - 8 - 8 * label(y).len() as i64,
            py - 5,
            &label(y),
            2,
            black,
        );
        y += ystep;
    }
    c.text(left - 60, top - 30, "s", 2, black);
    // x ticks at every K present.
    let mut ks: Vec<f64> = series.iter().flatten().map(|p| p.0).collect();
    ks.sort_by(f64::total_cmp);
    ks.dedup();
    for k in &ks {
        let px = xs(*k);
        c.line((px, bottom), (px, bottom + 5), black, 1);
        c.text(px - 4, bottom + 12, &label(*k), 2, black);
    }
    c.text(right - 10, bottom + 30, "K", 2, black);
    c.line((left, top), (left, bottom), black, 2);
    c.line((left, bottom), (right, bottom), black, 2);
    for (i, s) in series.iter().enumerate() {
        let col = COLOURS[i % COLOURS.len()];
        for pair in s.windows(2) {
            c.line(
                (xs(pair[0].0), ys(pair[0].1)),
                (xs(pair[1].0), ys(pair[1].1)),
                col,
                3,
            );
        }
        for p in s {
            let (px, py) = (xs(p.0), ys(p.1));
            c.rect(px - 4, py - 4, px + 4, py + 4, col);
        }
        // Legend: a bar per series, top right, in series order.
        let lx = right - 120;
        let ly = top + 10 + i as i64 * 18;
        c.rect(lx, ly, lx + 40, ly + 6, col);
    }
    encode(&c)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) -> Result<()> {
    let len = u32::try_from(data.len()).context("PNG chunk too large")?;
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn encode(c: &Canvas) -> Result<Vec<u8>> {
    let mut raw = Vec::with_capacity((c.w * 3 + 1) * c.h);
    for row in c.px.chunks(c.w * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&u32::try_from(c.w)?.to_be_bytes());
    ihdr.extend_from_slice(&u32::try_from(c.h)?.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr)?;
    chunk(&mut out, b"IDAT", &idat)?;
    chunk(&mut out, b"IEND", &[])?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn chart_is_a_png() -> Result<()> {
        let png = line_chart(
            &[vec![(1.0, 0.2), (4.0, 0.9)], vec![], vec![(1.0, 0.01)]],
            200,
            100,
        )?;
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        Ok(())
    }
}
