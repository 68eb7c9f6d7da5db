//! Form bodies (`application/x-www-form-urlencoded`) of the token, introspection, login and
//! sign-out endpoints, read with a size limit.

use super::errors::OAuthError;
use crate::http::{BoxError, Form, read_limited};
use bytes::Bytes;
use http::{Request, header};

/// Largest body accepted at `/token`, `/introspect`, `/login`, `/otp` and `/end_session`.
pub const MAX_FORM_BYTES: usize = 64 << 10;

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`].
pub async fn read_form<B>(req: Request<B>) -> Result<(http::request::Parts, Form), OAuthError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_limited(body, MAX_FORM_BYTES)
        .await
        .map_err(|e| OAuthError::request(e.to_string()))?;
    Ok((parts, Form::parse(&bytes)))
}
