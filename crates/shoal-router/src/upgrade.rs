//! HTTP/1.1 Upgrade (WebSocket) passthrough: the request goes to an instance on a connection of
//! its own with `Connection: upgrade` and `Upgrade` kept; after a `101 Switching Protocols`,
//! bytes are copied both ways until either side closes.

use http::header;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::backends::InFlight;

/// Whether the request asks to switch protocols: only HTTP/1.1 has `Upgrade` (RFC 9110
/// §7.8 ignores it in an HTTP/1.0 request).
pub(crate) fn is_upgrade<B>(request: &http::Request<B>) -> bool {
    request.version() == http::Version::HTTP_11
        && request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Copies bytes between the client and the instance once both sides have switched; the
/// connection counts as a request in flight on the instance until it closes.
pub(crate) async fn splice(client: OnUpgrade, instance: OnUpgrade, in_flight: InFlight) {
    let (client, instance) = tokio::join!(client, instance);
    if let (Ok(client), Ok(instance)) = (client, instance) {
        let mut client = TokioIo::new(client);
        let mut instance = TokioIo::new(instance);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut instance).await;
    }
    drop(in_flight);
}
