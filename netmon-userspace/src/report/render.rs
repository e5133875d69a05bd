//! Draws a [`Report`] with plotters: one picture (SVG or PNG, 1200×900)
//! with the title and period, the stacked rate per group over time, the
//! top groups as bars (with "other") and the destination-class split; or
//! a self-contained HTML page with that SVG inline, the tables behind it
//! and the [`Report`] as JSON. Bytes are payload bytes in binary units.
//!
//! Text is drawn with a TrueType font found on the system (DejaVu Sans or
//! Liberation Sans, Debian's `fonts-dejavu-core` / `fonts-liberation`):
//! plotters' `ab_glyph` backend needs one to measure and draw labels, and
//! fontconfig is not needed.
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::cli::output::human_bytes;
use crate::clock::rfc3339_from_unix_ms;
use crate::wire::{Report, ReportGroup};

/// Picture size.
pub const SIZE: (u32, u32) = (1200, 900);

/// Fonts tried, in order.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const COLORS: [RGBColor; 9] = [
    RGBColor(0x1f, 0x5f, 0xbf),
    RGBColor(0xd1, 0x49, 0x5b),
    RGBColor(0x2a, 0x9d, 0x8f),
    RGBColor(0xe9, 0xa2, 0x3b),
    RGBColor(0x6a, 0x4c, 0x93),
    RGBColor(0x3d, 0x8b, 0x37),
    RGBColor(0x8c, 0x56, 0x2d),
    RGBColor(0x1b, 0x9a, 0xbf),
    RGBColor(0x99, 0x99, 0x99),
];

/// Why a report could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No font.
    #[error(
        "drawing a report needs a TrueType font: install fonts-dejavu-core (looked for {})",
        FONTS.join(", ")
    )]
    NoFont,
    /// plotters failed.
    #[error("drawing the report: {0}")]
    Draw(String),
    /// Writing failed.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn draw_err(e: impl std::fmt::Display) -> RenderError {
    RenderError::Draw(e.to_string())
}

/// Registers the first font found as plotters' `sans-serif`, once.
fn font() -> Result<(), RenderError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        FONTS.iter().any(|p| {
            std::fs::read(p).is_ok_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    });
    if ok { Ok(()) } else { Err(RenderError::NoFont) }
}

fn color(i: usize, g: &ReportGroup) -> RGBColor {
    if g.other {
        COLORS[COLORS.len() - 1]
    } else {
        COLORS[i % (COLORS.len() - 1)]
    }
}

fn bytes(g: &ReportGroup) -> u64 {
    g.tx.payload_bytes.saturating_add(g.rx.payload_bytes)
}

fn time_label(unix_s: f64) -> String {
    let ms = (unix_s * 1000.0) as u64;
    let t = rfc3339_from_unix_ms(ms);
    // 2026-11-30T21:05:00.000Z -> 11-30 21:05
    t.get(5..16).map_or(t.clone(), |s| s.replace('T', " "))
}

/// The period line: `from – until UTC`.
#[must_use]
pub fn period(r: &Report) -> String {
    let short = |t: &str| t.get(..16).unwrap_or(t).replace('T', " ");
    format!("{} – {} UTC", short(&r.from), short(&r.until))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), RenderError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let body = root
        .titled(&r.title, ("sans-serif", 30).into_font().color(&BLACK))
        .map_err(draw_err)?;
    let (head, body) = body.split_vertically(34);
    head.draw(&Text::new(
        format!(
            "{} · payload bytes, binary units (1 KiB = 1024 B) · total sent {} · received {}",
            period(r),
            human_bytes(r.total.tx.payload_bytes, false),
            human_bytes(r.total.rx.payload_bytes, false)
        ),
        (20, 6),
        ("sans-serif", 17)
            .into_font()
            .color(&RGBColor(0x44, 0x44, 0x44)),
    ))
    .map_err(draw_err)?;
    let (upper, lower) = body.split_vertically(470);
    let (left, right) = lower.split_horizontally(660);
    stacked(&upper, r)?;
    bars(
        &left,
        &format!("Top {} (sent + received)", r.by),
        &r.groups,
        |g| human_bytes(bytes(g), false),
    )?;
    bars(&right, "Destination classes", &r.classes, |g| {
        format!("{:.1} %  {}", g.share * 100.0, human_bytes(bytes(g), false))
    })?;
    root.present().map_err(draw_err)
}

fn stacked<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, r: &Report) -> Result<(), RenderError>
where
    DB::ErrorType: 'static,
{
    let step_s = (r.step_ms.max(1)) as f64 / 1000.0;
    let xs: Vec<f64> = r.times_unix_ms.iter().map(|t| *t as f64 / 1000.0).collect();
    let mut cum: Vec<Vec<f64>> = Vec::new();
    let mut run = vec![0.0; xs.len()];
    for g in &r.groups {
        for (acc, v) in run.iter_mut().zip(&g.series_payload_bytes) {
            *acc += *v as f64 / step_s;
        }
        cum.push(run.clone());
    }
    let ymax = run.iter().copied().fold(0.0, f64::max).max(1.0) * 1.1;
    let (x0, x1) = (
        xs.first().copied().unwrap_or(0.0),
        xs.last().copied().unwrap_or(1.0) + step_s,
    );
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Rate per {}, stacked (bytes/s, sent + received)", r.by),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(100)
        .build_cartesian_2d(x0..x1, 0f64..ymax)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_labels(7)
        .y_labels(6)
        .x_label_formatter(&|x| time_label(*x))
        .y_label_formatter(&|y| format!("{}/s", human_bytes(*y as u64, false)))
        .x_desc("time (UTC)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(draw_err)?;
    for (i, g) in r.groups.iter().enumerate().rev() {
        let c = color(i, g);
        chart
            .draw_series(
                AreaSeries::new(
                    xs.iter().copied().zip(cum[i].iter().copied()),
                    0.0,
                    c.mix(0.9).filled(),
                )
                .border_style(c.stroke_width(1)),
            )
            .map_err(draw_err)?
            .label(g.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    groups: &[ReportGroup],
    label: impl Fn(&ReportGroup) -> String,
) -> Result<(), RenderError>
where
    DB::ErrorType: 'static,
{
    // At least six rows, so a few groups still get slim bars.
    let n = groups.len().max(6);
    let max = groups.iter().map(bytes).max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .build_cartesian_2d(0f64..max * 1.9, 0f64..n as f64)
        .map_err(draw_err)?;
    for (i, g) in groups.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let v = bytes(g) as f64;
        let c = color(i, g);
        chart
            .draw_series([Rectangle::new([(0.0, y + 0.15), (v, y + 0.85)], c.filled())])
            .map_err(draw_err)?;
        chart
            .draw_series([Text::new(
                format!("{}  {}", g.name, label(g)),
                (v + max * 0.02, y + 0.65),
                ("sans-serif", 16).into_font().color(&BLACK),
            )])
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The report as an SVG document.
///
/// # Errors
/// No font, or plotters fails.
pub fn svg(r: &Report) -> Result<String, RenderError> {
    font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, r)?;
    }
    Ok(out)
}

/// Writes the report as a PNG file.
///
/// # Errors
/// No font, plotters or the encoder fails.
pub fn png(r: &Report, path: &Path) -> Result<(), RenderError> {
    font()?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root, r)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(caption: &str, first: &str, groups: &[ReportGroup]) -> String {
    let mut t = format!(
        "<table><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\" class=\"num\">Sent</th><th scope=\"col\" class=\"num\">Received</th><th scope=\"col\" class=\"num\">Share</th></tr></thead><tbody>\n",
        esc(caption),
        esc(first)
    );
    for g in groups {
        t += &format!(
            "<tr><td>{}</td><td class=\"num\" data-bytes=\"{}\" title=\"{} bytes\">{}</td><td class=\"num\" data-bytes=\"{}\" title=\"{} bytes\">{}</td><td class=\"num\">{:.1} %</td></tr>\n",
            esc(&g.name),
            g.tx.payload_bytes,
            g.tx.payload_bytes,
            human_bytes(g.tx.payload_bytes, false),
            g.rx.payload_bytes,
            g.rx.payload_bytes,
            human_bytes(g.rx.payload_bytes, false),
            g.share * 100.0
        );
    }
    t + "</tbody></table>\n"
}

/// The report as one self-contained HTML page (well-formed XML too, so
/// any XML tool reads it): title, period, the SVG inline, the tables and
/// the data as JSON.
///
/// # Errors
/// As [`svg`].
pub fn html(r: &Report) -> Result<String, RenderError> {
    let picture = svg(r)?;
    let picture = picture
        .find("<svg")
        .map_or(picture.as_str(), |i| &picture[i..])
        .to_owned();
    let data = serde_json::to_string(r)
        .map_err(draw_err)?
        .replace("</", "<\\/")
        .replace("]]>", "]]\\u003e");
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>{title}</title>\n<style>body{{font-family:system-ui,sans-serif;max-width:1240px;margin:1rem auto;padding:0 1rem;color:#16181d}}svg{{max-width:100%;height:auto}}table{{border-collapse:collapse;margin:1rem 0;min-width:28rem}}caption{{text-align:left;font-weight:600}}th,td{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}}.num{{text-align:right;font-variant-numeric:tabular-nums}}</style></head>\n<body><h1>{title}</h1>\n<p>{period}. Payload bytes in binary units (1 KiB = 1024 B); series step {step} s ({tier} tier). Generated {generated}.</p>\n<figure>{picture}<figcaption>Stacked rate per {by}, top {by} with “other”, destination classes. The numbers are in the tables below.</figcaption></figure>\n{groups}{classes}<p>Total sent <span id=\"total-tx\" data-bytes=\"{ttx}\">{ttx_h}</span>, received <span id=\"total-rx\" data-bytes=\"{trx}\">{trx_h}</span>.</p>\n<script type=\"application/json\" id=\"report-data\">{data}</script>\n</body></html>\n",
        title = esc(&r.title),
        period = esc(&period(r)),
        step = r.step_ms / 1000,
        tier = esc(&r.tier),
        generated = esc(&r.generated_at),
        by = esc(&r.by),
        groups = table(&format!("Top {}", r.by), &r.by, &r.groups),
        classes = table("Destination classes", "class", &r.classes),
        ttx = r.total.tx.payload_bytes,
        trx = r.total.rx.payload_bytes,
        ttx_h = human_bytes(r.total.tx.payload_bytes, false),
        trx_h = human_bytes(r.total.rx.payload_bytes, false),
    ))
}

/// Writes `r` to `path` in the format its extension names (`.svg`, `.png`,
/// `.html`, `.json`).
///
/// # Errors
/// An unknown extension, drawing or writing errors.
pub fn write(r: &Report, path: &Path) -> anyhow::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let write = |bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|source| RenderError::Write {
            path: path.to_owned(),
            source,
        })
    };
    match ext.as_str() {
        "svg" => write(svg(r)?.as_bytes())?,
        "png" => png(r, path)?,
        "html" | "htm" => write(html(r)?.as_bytes())?,
        "json" => {
            let mut text = serde_json::to_vec_pretty(r)?;
            text.push(b'\n');
            write(&text)?;
        }
        _ => anyhow::bail!(
            "{}: the report format comes from the extension: .svg, .png, .html or .json",
            path.display()
        ),
    }
    Ok(())
}
