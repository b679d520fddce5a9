//! The `x-request-id` of requests that come without one.

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// Makes a random (version 4) UUID per request, like tower-http's `MakeRequestUuid`, from
/// the thread-local CSPRNG (`rand::thread_rng`) instead of the operating system's:
/// `Uuid::new_v4` makes a `getrandom` system call for every request, and then formats
/// the id through a `String`. Same format: lowercase, hyphenated.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestUuidV4;

impl MakeRequestId for MakeRequestUuidV4 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut buf);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let req = Request::new(());
        let mut make = MakeRequestUuidV4;
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                let id = make.make_request_id(&req).expect("an id");
                let text = id.header_value().to_str().expect("ASCII").to_string();
                let parsed = uuid::Uuid::parse_str(&text).expect("a UUID");
                assert_eq!(parsed.get_version_num(), 4);
                assert_eq!(text, parsed.hyphenated().to_string());
                text
            })
            .collect();
        assert_eq!(ids.len(), 1000);
    }
}
