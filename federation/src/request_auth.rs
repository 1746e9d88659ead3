//! X-Matrix request authentication (spec: "Request Authentication"): the
//! sender signs `{method, uri, origin, destination, content?}` with its key
//! and sends the signature in the `Authorization` header; the receiver
//! rebuilds that object from the request it got and checks the signature.
//! ruma's [`XMatrix`] does the parsing, formatting, signing and checking;
//! this module gives it the request parts and sorts its errors into ours.

use std::borrow::Cow;

use http::{Method, Request, Uri};
use ruma::{
    ServerName,
    api::federation::authentication::{XMatrixSigningInput, XMatrixVerificationError},
    signatures::{PublicKeyMap, PublicKeySet, VerificationError},
};

pub use ruma::api::federation::authentication::XMatrix;

use crate::{Error, Result, keys::SigningKey};

/// The parts of an HTTP request that its X-Matrix signature covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a Method,
    /// The request target exactly as sent or received: the path and query,
    /// percent-encoded, without scheme or host (`/_matrix/federation/...?...`).
    pub uri: &'a str,
    /// The JSON body; empty when the request has none.
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    fn to_http(self) -> Result<Request<&'a [u8]>> {
        if !self.uri.starts_with('/') {
            return Err(Error::InvalidRequest(format!(
                "the request target {:?} must start with '/'",
                self.uri
            )));
        }
        let uri: Uri = self
            .uri
            .parse()
            .map_err(|e| Error::InvalidRequest(format!("request target {:?}: {e}", self.uri)))?;
        Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .body(self.body)
            .map_err(|e| Error::InvalidRequest(e.to_string()))
    }
}

/// The `Authorization` header value that signs `request` as sent by `origin`
/// to `destination` (both the server names before any delegation).
pub fn authorization_header(
    key: &SigningKey,
    origin: &ServerName,
    destination: &ServerName,
    request: RequestParts<'_>,
) -> Result<String> {
    let signed = XMatrix::sign_http_request(
        &request.to_http()?,
        XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), key.pair()),
    )
    .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    Ok(signed.to_string())
}

/// Parses an inbound `Authorization` header value. Names are
/// case-insensitive, values may be quoted or bare tokens, unknown parameters
/// are ignored; `origin`, `key` and `sig` are required, `destination` is
/// optional for older senders.
pub fn parse_authorization(header: &str) -> Result<XMatrix> {
    XMatrix::parse(quote_bare_values_with_colons(header))
        .map_err(|e| Error::MalformedAuthorization(e.to_string()))
}

/// Quotes bare parameter values that contain `:`. RFC 9110 tokens cannot,
/// and ruma's parser follows it, but the spec asks recipients to accept them
/// because older servers sent `origin=example.org:8448` unquoted.
fn quote_bare_values_with_colons(header: &str) -> Cow<'_, str> {
    let bytes = header.as_bytes();
    let mut quoted = String::new();
    let mut copied = 0;
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // Skips the escaped byte; delimiters are ASCII, so landing inside
            // a multi-byte character is harmless.
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'=' if !in_quotes => {
                let after = &header[i + 1..];
                let start = i + 1 + (after.len() - after.trim_start().len());
                if bytes.get(start) != Some(&b'"') {
                    let end = header[start..]
                        .find(',')
                        .map_or(header.len(), |n| start + n);
                    let value = header[start..end].trim_end();
                    if value.contains(':') && !value.contains(['"', '\\']) {
                        quoted.push_str(&header[copied..start]);
                        quoted.push('"');
                        quoted.push_str(value);
                        quoted.push('"');
                        copied = start + value.len();
                    }
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if quoted.is_empty() {
        return Cow::Borrowed(header);
    }
    quoted.push_str(&header[copied..]);
    Cow::Owned(quoted)
}

/// Checks an inbound request's X-Matrix signature.
///
/// `our_name` is this server's name: a header naming another destination is
/// refused, and a header without one (older senders) is checked as if it
/// named us. `origin_keys` are the origin's verify keys that are valid now
/// (see [`crate::server_keys::RemoteServerKeys::public_keys`]); a key id
/// outside them is [`Error::UnknownKey`], for the caller to fetch the
/// origin's keys again.
pub fn verify_request(
    auth: &XMatrix,
    request: RequestParts<'_>,
    our_name: &ServerName,
    origin_keys: &PublicKeySet,
) -> Result<()> {
    if let Some(destination) = auth.destination.as_deref()
        && destination != our_name
    {
        return Err(Error::WrongDestination {
            destination: destination.to_string(),
        });
    }
    let Some(public_key) = origin_keys.get(auth.key.as_str()) else {
        return Err(Error::UnknownKey {
            server: auth.origin.to_string(),
            key_id: auth.key.to_string(),
        });
    };
    let keys: PublicKeyMap = [(
        auth.origin.to_string(),
        PublicKeySet::from([(auth.key.to_string(), public_key.clone())]),
    )]
    .into();
    auth.verify_http_request(&request.to_http()?, our_name, &keys)
        .map_err(|e| match e {
            XMatrixVerificationError::Signature(VerificationError::Json(e)) => {
                Error::InvalidRequest(format!("the body is not canonical JSON: {e}"))
            }
            other => Error::Verification(other.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::quote_bare_values_with_colons as quote;

    #[test]
    fn bare_values_with_colons_are_quoted() {
        assert_eq!(
            quote("X-Matrix origin=a.example:8448,key=ed25519:k1,sig=abc"),
            r#"X-Matrix origin="a.example:8448",key="ed25519:k1",sig=abc"#
        );
        assert_eq!(
            quote("X-Matrix origin=[::1]:8448 , sig=ab=="),
            r#"X-Matrix origin="[::1]:8448" , sig=ab=="#
        );
        // Quoted values, commas and colons inside them, and escapes stay.
        let untouched = r#"X-Matrix origin="a:1",x= "b,c=d:e",y="\",z:1",key=k"#;
        assert_eq!(quote(untouched), untouched);
        let unchanged = "X-Matrix origin=a.example,key=\"ed25519:k1\"";
        assert!(matches!(quote(unchanged), std::borrow::Cow::Borrowed(_)));
    }
}
