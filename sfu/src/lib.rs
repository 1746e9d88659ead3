//! The call engine as a library: rooms of WebRTC peers, RTP forwarding and the
//! signalling messages in and out. It lands with the calls issue.
