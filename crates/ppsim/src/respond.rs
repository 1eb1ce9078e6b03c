//! A JSON response, as every route of the simulator answers (the API's and the control API's),
//! in a module of its own so the two route tables need not import each other.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body.into()))
        .expect("valid response")
}
