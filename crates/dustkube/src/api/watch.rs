//! WATCH: a chunked stream of `{"type":"ADDED|MODIFIED|DELETED|ERROR","object":...}` lines, one
//! flushed chunk per event. `resourceVersion` unset or "0" starts with the current objects as
//! ADDED; otherwise events after that revision; a compacted revision yields an ERROR event with
//! a 410 Expired Status. Table watches (`kubectl get -w`) send one-row Tables. With a label or
//! field selector, an object that stops matching is sent as DELETED and one that starts
//! matching as ADDED, as the real API does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};

use super::objects::{collect, present, selectors};
use super::status::ApiError;
use super::table::{self, Include};
use super::AppState;
use crate::resources::ResourceType;
use crate::storage::{EventKind, StoreError, Stored};

/// Longest watch when the client names no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The event a selector watch sends for a change, from whether the object matched before and
/// after it (like the real API's watch cache): entering the selection is ADDED, leaving it is
/// DELETED (with the last matching state), staying in it MODIFIED; `None` when it never matched.
fn transition(before: bool, now: bool) -> Option<&'static str> {
    match (before, now) {
        (false, true) => Some("ADDED"),
        (true, true) => Some("MODIFIED"),
        (true, false) => Some("DELETED"),
        (false, false) => None,
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Serves a watch on `rt` (in `namespace`, or everywhere).
pub async fn serve(
    state: &AppState,
    rt: &'static ResourceType,
    namespace: Option<&str>,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(params)?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let as_table = table::wants_table(accept);
    let include = Include::parse(params.get("includeObject").map(String::as_str));
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let rv = params
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");

    let mut initial = Vec::new();
    let from = if rv.is_empty() || rv == "0" {
        let mut p = params.clone();
        p.remove("limit");
        p.remove("continue");
        let (items, revision, _) = collect(state, rt, namespace, &p).await?;
        initial = items;
        revision + 1
    } else {
        rv.parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion \"{rv}\"")))?
            + 1
    };

    let render = move |obj: Value, first: &mut bool| -> Value {
        if !as_table {
            return obj;
        }
        let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
        let mut t = table::table(rt, &[obj], meta, include);
        if !*first {
            t["columnDefinitions"] = json!([]);
        }
        *first = false;
        t
    };

    let mut first = true;
    let mut head: Vec<Bytes> = initial
        .into_iter()
        .map(|o| line("ADDED", render(o, &mut first)))
        .collect();

    let prefix = rt.prefix(namespace);
    let events = match state.store.watch(&prefix, from).await {
        Ok(s) => s,
        Err(StoreError::Expired {
            requested,
            compacted,
        }) => {
            let status = ApiError::expired(format!(
                "too old resource version: {} ({compacted})",
                requested.saturating_sub(1)
            ))
            .status();
            head.push(line("ERROR", status));
            let body = Body::from_stream(futures::stream::iter(
                head.into_iter().map(Ok::<_, Infallible>),
            ));
            return Ok(response(body));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };

    let tail = events
        .scan((first, false), move |(first, done), ev| {
            if *done {
                return futures::future::ready(None);
            }
            let out = match ev {
                Ok(ev) => {
                    let obj = present(rt, &ev.object);
                    let prev = ev.prev.map(|value| {
                        present(
                            rt,
                            &Stored {
                                key: ev.object.key.clone(),
                                value,
                                revision: ev.object.revision,
                            },
                        )
                    });
                    let matches = |o: &Value| labels.matches(o) && fields.matches(o);
                    let now = ev.kind != EventKind::Deleted && matches(&obj);
                    let before = prev.as_ref().is_some_and(matches);
                    match (transition(before, now), prev) {
                        (Some("DELETED"), Some(old)) => Some(line("DELETED", render(old, first))),
                        (Some(kind), _) => Some(line(kind, render(obj, first))),
                        (None, _) => Some(Bytes::new()),
                    }
                }
                Err(e) => {
                    *done = true;
                    let status = match e {
                        StoreError::Expired {
                            requested,
                            compacted,
                        } => ApiError::expired(format!(
                            "too old resource version: {} ({compacted})",
                            requested.saturating_sub(1)
                        )),
                        other => ApiError::internal(other),
                    };
                    Some(line("ERROR", status.status()))
                }
            };
            futures::future::ready(out)
        })
        .filter(|b| futures::future::ready(!b.is_empty()));
    let stream = futures::stream::iter(head)
        .chain(tail)
        .map(Ok::<_, Infallible>);
    // The watch ends after timeoutSeconds in total, like the real API.
    let stream = stream.take_until(tokio::time::sleep(timeout));
    Ok(response(Body::from_stream(stream)))
}

fn response(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_transitions_follow_the_real_watch_cache() {
        assert_eq!(transition(false, true), Some("ADDED"));
        assert_eq!(transition(true, true), Some("MODIFIED"));
        assert_eq!(transition(true, false), Some("DELETED"));
        assert_eq!(transition(false, false), None);
    }
}
