//! Building one peer connection: the codecs a call may use, the interceptors,
//! the crypto provider and where its UDP socket goes. The server's peers and
//! the test peers are built the same way, so both sides agree on codecs.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use webrtc::{
    peer_connection::{
        MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
        RTCConfigurationBuilder, RTCIceCandidateType, RTCIceServer, RTCIceTransportPolicy,
        Registry, SettingEngineBuilder, crypto::providers::AwsLcRsProvider,
        register_default_interceptors,
    },
    runtime::TokioRuntime,
};

use rtc::interceptor::Slot;

use crate::{Result, codec::Codec, forward::KeyFrameRequests};

/// ICE gives up on a silent connection after this long: the participant is
/// then removed from the call.
const ICE_FAILED_AFTER: Duration = Duration::from_secs(10);
/// ICE reports a connection as disconnected (it may recover) after this long.
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(4);
/// Consent/keep-alive checks on an idle connection.
const ICE_KEEPALIVE: Duration = Duration::from_secs(2);

/// Where and how one peer connection is placed.
pub(crate) struct PeerPlacement {
    /// The address and port its UDP socket binds (port 0: any).
    pub socket: SocketAddr,
    /// Announced instead of the bound address (1:1 NAT).
    pub public_ip: Option<IpAddr>,
    /// STUN/TURN servers the peer gathers candidates through.
    pub ice_servers: Vec<RTCIceServer>,
    /// Use relay candidates only (a client forced through TURN).
    pub relay_only: bool,
}

/// The codecs of a call: Opus for audio; VP8 and H.264 for video. Payload
/// types follow the browsers' usual numbering.
pub(crate) fn media_engine() -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    for codec in Codec::ALL {
        engine.register_codec(codec.parameters(), codec.kind())?;
    }
    Ok(engine)
}

/// Builds a peer connection and starts its driver.
pub(crate) async fn build(
    placement: PeerPlacement,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>> {
    let mut engine = media_engine()?;
    // Last in the chain (past every named slot), so the default interceptors
    // have read each RTCP packet before it marks key-frame requests.
    let registry = register_default_interceptors(Registry::new(), &mut engine)?
        .with(Slot::from(14_000), KeyFrameRequests::default());
    let mut settings = SettingEngineBuilder::new()
        .with_crypto_provider(Arc::new(AwsLcRsProvider::new()))
        .with_ice_timeouts(
            Some(ICE_DISCONNECTED_AFTER),
            Some(ICE_FAILED_AFTER),
            Some(ICE_KEEPALIVE),
        )
        // Tests and single-machine setups bind the loopback address on purpose.
        .with_include_loopback_candidate(placement.socket.ip().is_loopback());
    if let Some(public_ip) = placement.public_ip {
        settings =
            settings.with_nat_1to1_ips(vec![public_ip.to_string()], RTCIceCandidateType::Host);
    }
    let policy = if placement.relay_only {
        RTCIceTransportPolicy::Relay
    } else {
        RTCIceTransportPolicy::All
    };
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(placement.ice_servers)
        .with_ice_transport_policy(policy)
        .build();
    let peer = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings.build())
        .with_runtime(Arc::new(TokioRuntime))
        .with_handler(handler)
        .with_udp_addrs(vec![placement.socket])
        .build()
        .await?;
    Ok(Arc::new(peer))
}
