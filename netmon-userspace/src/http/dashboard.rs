//! The dashboard: one page and its files, compiled into the binary (no CDN;
//! it works with no internet). Sources in `netmon-userspace/assets/
//! dashboard/`: `index.html`, `dashboard.js` (with `format.js`, shared with
//! the Hosts page), `dashboard.css`, and uPlot
//! 1.6.32 (MIT, from the npm registry, with its license) under `vendor/`.
//! The page reads only the JSON API ([`crate::http::api`]) and the live
//! stream ([`crate::http::live`]).
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use crate::http::api::ApiFailure;

/// uPlot's version, vendored from the npm registry.
pub const UPLOT_VERSION: &str = "1.6.32";

const INDEX: &str = include_str!("../../assets/dashboard/index.html");

/// `(name, content type, bytes)` of every asset.
const ASSETS: [(&str, &str, &[u8]); 6] = [
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/dashboard.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uplot/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uplot/LICENSE"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/format.js"),
    ),
];

/// `GET /`.
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiFailure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such asset: {file}"),
        )
        .into_response(),
    }
}
