//! The embedded dashboard: three static files built from `web/` into the binary.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/index.html"));
const APP_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/app.js"));
const APP_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/app.css"));

/// What the page may load: its own script and stylesheet (no inline script or `style`
/// attribute; the code and uPlot set styles through the CSSOM, which this allows), the
/// `data:,` favicon, and websockets.
///
/// `connect-src` allows `ws:` and `wss:` to any host, not only this one: a user may confirm
/// another relay in the page (a `ws=` link), and the relay cannot know that host when it serves
/// the page. The page itself connects elsewhere only after that confirmation, and with
/// `script-src 'self'` no other script runs to use the breadth. `'self'` also covers this
/// relay's own `ws:`/`wss:` in CSP 3 browsers; the schemes cover the older ones.
///
/// `web/src/index.html` carries the same policy in a `<meta>` for copies served elsewhere,
/// without `frame-ancestors`, which only works as a header.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; object-src 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            // frame-ancestors says the same to current browsers; this is for older ones.
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}
