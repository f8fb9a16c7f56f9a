//! `/`: an HTML page linking every endpoint, as nats-server's index does.

use super::{Handled, Monitor, Query, Reply};
use crate::identity::{NATS_VERSION, STARLING_VERSION};

/// (path, title) of every endpoint the page links.
const LINKS: [(&str, &str); 9] = [
    ("varz", "General"),
    ("connz", "Connections"),
    ("accountz", "Accounts"),
    ("subsz", "Subscriptions"),
    ("routez", "Routes"),
    ("leafz", "LeafNodes"),
    ("gatewayz", "Gateways"),
    ("healthz", "Health Probe"),
    ("metrics", "Prometheus Metrics"),
];

pub(super) fn index(mon: &Monitor<'_>, _query: &Query) -> Handled {
    let mut html = String::with_capacity(1024);
    html.push_str(
        "<html lang=\"en\">\n<head>\n<title>Starling monitoring</title>\n\
         <style type=\"text/css\">\n\
         body { font-family: ui-sans-serif,system-ui,sans-serif; margin-left: 32px }\n\
         a { display: block; margin-left: 7px; padding-bottom: 6px }\n\
         </style>\n</head>\n<body>\n",
    );
    html.push_str(&format!(
        "<h1>Starling {STARLING_VERSION}</h1>\n<p>NATS server {NATS_VERSION} compatible; \
         server id <code>{}</code></p>\n",
        mon.server_id()
    ));
    for (path, title) in LINKS {
        html.push_str(&format!("<a href=./{path}>{title}</a>\n"));
    }
    html.push_str("</body>\n</html>\n");
    Ok(Reply::Other {
        content_type: "text/html; charset=utf-8",
        body: html.into_bytes(),
    })
}
