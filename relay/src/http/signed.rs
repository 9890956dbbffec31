//! `Signed`: the extractor every signed HTTP API handler takes. It reads the body (within the
//! router's `DefaultBodyLimit`), finds the app, checks the signature and the app's request
//! budget, and refuses with the same `ApiError` replies as `auth::verify`.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequest, FromRequestParts, RawPathParams, Request};
use bytes::Bytes;

use super::{auth, ApiError};
use crate::apps::{App, Apps};

/// A request whose signature checked out: the app it is for, its query parameters and its
/// body (the bytes that were signed).
pub struct Signed {
    pub app: Arc<App>,
    pub params: Vec<(String, String)>,
    pub body: Bytes,
}

impl Signed {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl<S> FromRequest<S> for Signed
where
    Arc<Apps>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let apps = Arc::<Apps>::from_ref(state);
        let (mut parts, body) = req.into_parts();
        let path = RawPathParams::from_request_parts(&mut parts, state).await.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        let in_path = path.iter().find(|(k, _)| *k == "app_id").map(|(_, v)| v.to_owned());
        let app_id = match in_path {
            Some(id) => id,
            // A path without an app id (the official Python SDK's terminate_connections) is
            // for the app whose key signed it; unknown keys are refused before the body is read.
            None => app_of_key(&apps, parts.uri.query()).ok_or_else(|| ApiError::unauthorized("auth_key is missing or unknown"))?,
        };
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let body = Bytes::from_request(Request::from_parts(parts, body), state).await?;
        auth::verify(&apps, &app_id, &method, &uri, body)
    }
}

fn app_of_key(apps: &Apps, query: Option<&str>) -> Option<String> {
    let key = form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "auth_key")?.1;
    apps.by_key(&key).map(|a| a.config.id.clone())
}
